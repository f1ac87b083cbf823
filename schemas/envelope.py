"""CloudEvents 1.0 envelope, carried on Kafka in binary content mode.

In binary mode the event's data is the Kafka message value (JSON) and each
context attribute travels as a header named ``ce_<attribute>``; see the
CloudEvents Kafka protocol binding. Keeping attributes in headers lets
brokers, tools and the DLQ route or inspect events without parsing payloads.
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
HEADER_PREFIX = "ce_"
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
"""W3C trace context version 00, the only one nbembed reads (a fixed 55 characters)."""
MAX_TRACESTATE = 512
"""W3C: vendors should propagate at least 512 characters; nbembed carries no more."""
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_TRACESTATE = re.compile(r"^[\x20-\x7e]*$")


def valid_traceparent(value: object) -> str | None:
    """``value`` if it is a W3C ``traceparent`` naming a real trace and span, else None.

    All-zero ids are invalid per the spec; anything else malformed or oversized
    is dropped, never repaired: trace context is a hint, not data.
    """
    if not isinstance(value, str) or not _TRACEPARENT.match(value):
        return None
    _, trace_id, span_id, _ = value.split("-")
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return value


def valid_tracestate(value: object) -> str | None:
    """``value`` if it is a bounded, printable-ASCII W3C ``tracestate``, else None."""
    if not isinstance(value, str) or len(value) > MAX_TRACESTATE:
        return None
    return value if _TRACESTATE.match(value) else None


class EventData(BaseModel):
    """Base of every event payload: a type name, a topic and an ordering key.

    ``event_type`` is the CloudEvents ``type`` (versioned by name, e.g.
    ``io.nbembed.session.requested.v1``); ``topic`` is the Kafka topic the event
    travels on. ``partition_key`` says what must stay in order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]

    def partition_key(self) -> str:
        """The Kafka key: events with the same key keep their order."""
        raise NotImplementedError


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event whose ``data`` is one of the payloads in `schemas.events`."""

    model_config = ConfigDict(frozen=True)

    # Bounded: events are untrusted input (anyone with broker access can publish).
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    type: str = Field(max_length=256)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = Field(default=None, max_length=256)
    specversion: str = SPEC_VERSION
    datacontenttype: str = Field(default=CONTENT_TYPE, max_length=128)
    # The CloudEvents distributed-tracing extension: the W3C trace context of the
    # work that produced the event (``ce_traceparent`` / ``ce_tracestate`` on Kafka).
    traceparent: str | None = Field(default=None, max_length=55)
    tracestate: str | None = Field(default=None, max_length=MAX_TRACESTATE)
    data: DataT

    @field_validator("traceparent")
    @classmethod
    def _traceparent(cls, value: str | None) -> str | None:
        if value is not None and valid_traceparent(value) is None:
            raise ValueError("not a W3C traceparent (version 00)")
        return value

    @field_validator("tracestate")
    @classmethod
    def _tracestate(cls, value: str | None) -> str | None:
        if value is not None and valid_tracestate(value) is None:
            raise ValueError("not a W3C tracestate")
        return value

    @classmethod
    def wrap(cls, data: DataT, *, source: str, subject: str | None = None) -> CloudEvent[DataT]:
        """Wrap a payload in a fresh envelope (new id, current time)."""
        return cls(source=source, type=data.event_type, subject=subject, data=data)

    def kafka_key(self) -> bytes:
        """The Kafka message key, from the payload's ordering key."""
        return self.data.partition_key().encode()

    def kafka_headers(self) -> dict[str, str]:
        """The context attributes as ``ce_*`` headers (binary content mode)."""
        headers = {
            f"{HEADER_PREFIX}specversion": self.specversion,
            f"{HEADER_PREFIX}id": self.id,
            f"{HEADER_PREFIX}source": self.source,
            f"{HEADER_PREFIX}type": self.type,
            f"{HEADER_PREFIX}time": self.time.isoformat(),
            "content-type": self.datacontenttype,
        }
        for name in ("subject", "traceparent", "tracestate"):
            value = getattr(self, name)
            if value is not None:
                headers[f"{HEADER_PREFIX}{name}"] = value
        return headers

    def kafka_value(self) -> bytes:
        """The message value: the payload alone, as JSON."""
        return self.data.model_dump_json().encode()

    @classmethod
    def from_kafka(
        cls, data_model: builtins.type[DataT], headers: Mapping[str, Any], value: bytes
    ) -> CloudEvent[DataT]:
        """Rebuild an event from a Kafka message; raises ``ValueError`` if it is not one.

        Header values may arrive as ``bytes`` or ``str`` depending on the client.
        Trace context that is not valid W3C is left out: the event itself still is one.
        """

        def header(name: str) -> str | None:
            raw = headers.get(f"{HEADER_PREFIX}{name}")
            if raw is None:
                return None
            return raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)

        if header("specversion") != SPEC_VERSION:
            raise ValueError(f"not a CloudEvents {SPEC_VERSION} message (missing ce_specversion)")
        event_type = header("type")
        if event_type != data_model.event_type:
            raise ValueError(f"expected event type {data_model.event_type}, got {event_type}")
        fields: dict[str, Any] = {
            "id": header("id"),
            "source": header("source"),
            "type": event_type,
            "time": header("time"),
            "subject": header("subject"),
            "traceparent": valid_traceparent(header("traceparent")),
            "tracestate": valid_tracestate(header("tracestate")),
            "data": data_model.model_validate_json(value),
        }
        return CloudEvent[data_model].model_validate(  # type: ignore[valid-type]
            {k: v for k, v in fields.items() if v is not None}
        )
