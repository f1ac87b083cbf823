"""Each hop's share of a flow, from the services' own timing fields in their logs.

Sync and the provisioner log ``queued_ms`` (Kafka hop plus wait behind other
events) and one ``*_ms`` lap per step of each handler run (see
``services/common/hops.py``). A benchmark notes where each service's log ends
before it runs (`LogMark`), then collects the lines its own flows wrote.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from tests.bench.report import percentile


class LogMark:
    """Where each replica's log of one service ends now (``sync.log``, ``sync-2.log``...);
    `records` reads what was written after it."""

    def __init__(self, logs_dir: Path, service: str) -> None:
        self.logs_dir, self.service = logs_dir, service
        self.offsets = {path: path.stat().st_size for path in self._logs()}

    def _logs(self) -> list[Path]:
        first = self.logs_dir / f"{self.service}.log"
        others = sorted(self.logs_dir.glob(f"{self.service}-[0-9]*.log"))
        return [path for path in (first, *others) if path.exists()]

    def records(self, message: str, key: str, ids: set[str]) -> list[dict[str, object]]:
        """Log records of every replica with ``message`` whose ``key`` field is one of ``ids``.

        A replica whose log began after the mark (one started since)
        is read from its start."""
        found: list[dict[str, object]] = []
        for path in self._logs():
            with path.open("rb") as log:
                log.seek(self.offsets.get(path, 0))
                for line in log:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("message") == message and record.get(key) in ids:
                        found.append(record)
        return found


def laps(records: list[dict[str, object]]) -> dict[str, list[float]]:
    """Every ``*_ms`` field of ``records``, in seconds, by field name."""
    result: dict[str, list[float]] = {}
    for record in records:
        for name, value in record.items():
            if name.endswith("_ms") and isinstance(value, int | float):
                result.setdefault(name.removesuffix("_ms"), []).append(value / 1000)
    return result


def print_shares(title: str, hops: dict[str, list[float]], total: list[float]) -> None:
    """Per hop: p50, p99 and its share of the mean total."""
    whole = statistics.mean(total)
    print(f"{title}: where the time goes (seconds; share of the mean total {whole:.3f} s)")
    for name, values in hops.items():
        mean = statistics.mean(values)
        print(
            f"  {name:28} p50 {percentile(values, 0.5):7.3f}  p99 {percentile(values, 0.99):7.3f}"
            f"  mean {mean:7.3f}  {100 * mean / whole:5.1f}%"
        )
