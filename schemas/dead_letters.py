"""Dead letters as they sit on ``<topic>.dlq``: the failed message, untouched, plus headers.

`services.common.kafka.dead_letter` writes them; the gateway (failing the
session or save a dead-lettered command was about) and ``python -m infra dlq``
(listing and replaying them) read them through `DeadLetter`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.envelope import HEADER_PREFIX

REASON = "nbembed_dlq_reason"
SOURCE_TOPIC = "nbembed_dlq_source_topic"
CONSUMER_GROUP = "nbembed_dlq_consumer_group"
SOURCE_PARTITION = "nbembed_dlq_source_partition"
SOURCE_OFFSET = "nbembed_dlq_source_offset"
ATTEMPTS = "nbembed_dlq_attempts"
TIME = "nbembed_dlq_time"
REPLAYED_FROM = "nbembed_replayed_from"
"""Set on a replayed message: the dead letter it came from (``topic:partition:offset``)."""
DLQ_HEADERS = (
    REASON,
    SOURCE_TOPIC,
    CONSUMER_GROUP,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    ATTEMPTS,
    TIME,
)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


@dataclass(frozen=True)
class DeadLetter:
    """One message on a dead-letter topic, with why and where it failed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, Any]] | dict[str, Any],
    ) -> DeadLetter:
        """From a consumed record (aiokafka gives header pairs, FastStream a dict)."""
        pairs = headers.items() if isinstance(headers, dict) else headers
        return cls(topic, partition, offset, key, value or b"", {k: _text(v) for k, v in pairs})

    @property
    def reason(self) -> str:
        return self.headers.get(REASON, "")

    @property
    def source_topic(self) -> str:
        return self.headers.get(SOURCE_TOPIC, self.topic.removesuffix(".dlq"))

    @property
    def consumer_group(self) -> str:
        return self.headers.get(CONSUMER_GROUP, "")

    @property
    def source(self) -> tuple[str, int, int]:
        """Where the failed message was: topic, partition, offset (-1 when unknown)."""
        return (
            self.source_topic,
            int(self.headers.get(SOURCE_PARTITION, "-1") or -1),
            int(self.headers.get(SOURCE_OFFSET, "-1") or -1),
        )

    @property
    def attempts(self) -> int:
        return int(self.headers.get(ATTEMPTS, "0") or 0)

    @property
    def time(self) -> str:
        return self.headers.get(TIME, "")

    @property
    def event_type(self) -> str | None:
        return self.headers.get(f"{HEADER_PREFIX}type")

    @property
    def subject(self) -> str | None:
        return self.headers.get(f"{HEADER_PREFIX}subject")

    def field(self, name: str) -> str | None:
        """A top-level string field of the payload, if the value is a JSON object with it."""
        try:
            data = json.loads(self.value)
        except ValueError:
            return None
        value = data.get(name) if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def replay_headers(self) -> dict[str, str]:
        """The original message's headers (CloudEvents attributes), without the DLQ's own."""
        headers = {k: v for k, v in self.headers.items() if k not in DLQ_HEADERS}
        headers[REPLAYED_FROM] = f"{self.topic}:{self.partition}:{self.offset}"
        return headers
