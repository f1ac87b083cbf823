"""Kafka the nbembed way: CloudEvents out, idempotent handlers in, DLQ after retries.

Every service consumes through one `EventConsumer`. Offsets are committed
only after the handler (or the dead-lettering) is done, so a crash
mid-handling redelivers the message (at-least-once); handlers must therefore
be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import SASLScram512

from schemas import CloudEvent, EventData, dlq_topic
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

DataT = TypeVar("DataT", bound=EventData)
Handler = Callable[[CloudEvent[DataT]], Awaitable[None]]


class PermanentError(Exception):
    """A failure retrying cannot fix (bad content, unknown notebook): dead-letter at once."""


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never lingers.

    ``acks=all`` with idempotence means an acknowledged publish survives a
    broker failover and is never duplicated by the producer's own retries;
    ``linger_ms=0`` keeps the hot path free of batching delays. With a Kafka
    username the broker logs in as that service (SASL/SCRAM-SHA-512) and Kafka's
    ACLs bound what it may read and write.
    """
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        security=_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        logger=logging.getLogger(f"{client_id}.kafka"),
    )


def _security(settings: ServiceSettings) -> SASLScram512 | None:
    if settings.kafka_username is None or settings.kafka_password is None:
        return None
    return SASLScram512(settings.kafka_username, settings.kafka_password.get_secret_value())


async def publish_event(broker: KafkaBroker, event: CloudEvent[DataT]) -> None:
    """Publish ``event`` on its payload's topic, keyed for ordering, in binary mode."""
    await broker.publish(
        event.kafka_value(),
        topic=event.data.topic,
        key=event.kafka_key(),
        headers=event.kafka_headers(),
    )


async def dead_letter(
    broker: KafkaBroker, msg: KafkaMessage, *, group_id: str, reason: str, attempts: int
) -> None:
    """Copy a failed message to its topic's DLQ with why it failed, keeping key and headers."""
    raw = msg.raw_message
    topic = raw.topic  # type: ignore[union-attr]
    headers = {k: v for k, v in msg.headers.items() if isinstance(v, str)}
    headers.update(
        {
            "nbembed_dlq_reason": reason[:2000],
            "nbembed_dlq_source_topic": topic,
            "nbembed_dlq_consumer_group": group_id,
            "nbembed_dlq_source_partition": str(raw.partition),  # type: ignore[union-attr]
            "nbembed_dlq_source_offset": str(raw.offset),  # type: ignore[union-attr]
            "nbembed_dlq_attempts": str(attempts),
            "nbembed_dlq_time": datetime.now(UTC).isoformat(),
        }
    )
    await broker.publish(
        msg.body,
        topic=dlq_topic(topic),
        key=raw.key,  # type: ignore[union-attr]
        headers=headers,
    )
    log.error(
        "dead-lettered message",
        extra={"topic": topic, "offset": raw.offset, "reason": reason},  # type: ignore[union-attr]
    )


class EventConsumer:
    """One consumer-group member for all the event types a service handles.

    A single subscriber reads every registered topic and dispatches by topic
    and CloudEvents type: one member per process keeps the group's rebalances
    to one on start, instead of one per topic. Each message is parsed as the
    expected CloudEvent, its handler tried ``dlq_after_attempts`` times with
    exponential backoff, and a message that still fails, or is no valid event,
    is copied to ``<topic>.dlq`` with the reason before its offset is committed.
    """

    def __init__(self, broker: KafkaBroker, *, group_id: str, settings: ServiceSettings) -> None:
        self._broker = broker
        self._group_id = group_id
        self._settings = settings
        self._routes: dict[str, dict[str, tuple[type[EventData], Handler[Any]]]] = {}

    def on(self, data_model: type[DataT], handler: Handler[DataT]) -> None:
        """Handle events of ``data_model`` (on its topic) with ``handler``."""
        self._routes.setdefault(data_model.topic, {})[data_model.event_type] = (
            data_model,
            handler,
        )

    def attach(self, *, concurrency: int = 1) -> None:
        """Register the consumer with the broker; call once, after every `on`.

        With ``concurrency`` > 1 (one topic only), that many consumers share the
        topic's partitions: events with different keys run in parallel, events
        with the same key stay in order, and offsets are still committed only
        after handling.
        """
        if concurrency > 1 and len(self._routes) != 1:
            raise ValueError("concurrent consumption needs exactly one topic")
        self._broker.subscriber(
            *self._routes,
            group_id=self._group_id,
            auto_offset_reset="earliest",
            # Commit only after the handler (or the DLQ) is done; if publishing to
            # the DLQ itself fails, the exception seeks back and the message returns.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_workers=concurrency,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )(self._consume)

    async def _consume(self, msg: KafkaMessage) -> None:
        topic = msg.raw_message.topic  # type: ignore[union-attr]
        event_type = msg.headers.get("ce_type")
        route = self._routes[topic].get(event_type) if isinstance(event_type, str) else None
        if route is None:
            await self._dead_letter(msg, f"invalid event: unknown type {event_type!r}", 0)
            return
        data_model, handler = route
        try:
            event = CloudEvent.from_kafka(data_model, msg.headers, msg.body)
        except ValueError as exc:
            await self._dead_letter(msg, f"invalid event: {exc}", attempts=0)
            return
        delay = self._settings.retry_backoff_seconds
        attempts = self._settings.dlq_after_attempts
        for attempt in range(1, attempts + 1):
            try:
                await handler(event)
                return
            except Exception as exc:
                if isinstance(exc, PermanentError) or attempt == attempts:
                    await self._dead_letter(msg, f"{type(exc).__name__}: {exc}", attempt)
                    return
                log.warning(
                    "handler failed, retrying",
                    extra={"event_id": event.id, "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(delay)
                delay *= 2

    async def _dead_letter(self, msg: KafkaMessage, reason: str, attempts: int) -> None:
        await dead_letter(
            self._broker, msg, group_id=self._group_id, reason=reason, attempts=attempts
        )
