"""Export the event contracts: ``python -m schemas [OUTPUT_DIR]``.

Writes one JSON Schema per event type. The AsyncAPI document, which says which
service reads and writes each of them where, comes from the services
(``python -m services.asyncapi``; ``make schemas`` writes both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.events import ALL_EVENTS


def export(out_dir: Path) -> list[Path]:
    """Write the JSON Schemas into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for event in ALL_EVENTS:
        schema = event.model_json_schema()
        schema["$id"] = event.event_type
        schema["x-kafka-topic"] = event.topic
        path = out_dir / f"{event.event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("schemas/json")
    for path in export(target):
        print(path)
