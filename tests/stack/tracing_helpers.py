"""The host's side of tracing in stack tests: its traceparent, and the spans recorded in it."""

from __future__ import annotations

import json
import secrets
from typing import Any

from infra.settings import StackSettings

Span = dict[str, Any]


class HostTrace:
    """A host's own trace: the sampled traceparent its requests to the gateway carry."""

    def __init__(self) -> None:
        self.trace_id = secrets.token_hex(16)
        self.span_id = secrets.token_hex(8)
        self.traceparent = f"00-{self.trace_id}-{self.span_id}-01"
        self.headers = {"traceparent": self.traceparent}

    def spans(self, settings: StackSettings) -> list[Span]:
        """Every span any service replica recorded in this trace so far (links aside)."""
        found = []
        for path in sorted(settings.traces_dir.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if self.trace_id in line:
                    span: Span = json.loads(line)
                    if span["context"]["trace_id"] == f"0x{self.trace_id}":
                        found.append(span)
        return found


def service_of(span: Span) -> str:
    """The service (``nbembed-gateway``, …) that recorded ``span``."""
    return str(span["resource"]["attributes"]["service.name"])


def url_of(span: Span) -> str:
    """An HTTP client span's URL ("" for other spans)."""
    attributes = span["attributes"]
    return str(attributes.get("url.full") or attributes.get("http.url") or "")
