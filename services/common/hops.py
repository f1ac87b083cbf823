"""Where an event's time went, for the logs: each handler says how long it queued and worked.

Ops read these fields to find the slow hop of a flow; ``tests/bench`` sums
them per hop. ``queued_ms`` runs from the event's CloudEvents ``time`` (set
by its publisher, on the same clock in the local stack) to the start of
handling: the Kafka hop plus any wait behind other events of its partition.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Hops:
    """Laps of one handler run, in milliseconds, ready to go into a log's ``extra``."""

    def __init__(self, published: datetime) -> None:
        self._last = time.monotonic()
        queued = (datetime.now(UTC) - published).total_seconds() * 1000
        self.laps: dict[str, float] = {"queued_ms": round(queued, 1)}

    def lap(self, name: str) -> None:
        """Record the time since the previous lap (or the start) as ``name``."""
        now = time.monotonic()
        self.laps[name] = round((now - self._last) * 1000, 1)
        self._last = now
