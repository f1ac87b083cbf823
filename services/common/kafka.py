"""Kafka the nbembed way: CloudEvents out, idempotent handlers in, DLQ after retries.

Every consumer goes through `subscribe_event`: the message is parsed as a
CloudEvent of the expected type, the handler is tried a bounded number of
times with exponential backoff, and a message that still fails (or is not a
valid event at all) is copied to ``<topic>.dlq`` with the reason before its
offset is committed. Offsets are committed only after that, so a crash
mid-handling redelivers the message (at-least-once); handlers must therefore
be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

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
    ``linger_ms=0`` keeps the hot path free of batching delays.
    """
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        logger=logging.getLogger(f"{client_id}.kafka"),
    )


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


def subscribe_event(
    broker: KafkaBroker,
    data_model: type[DataT],
    *,
    group_id: str,
    settings: ServiceSettings,
) -> Callable[[Handler[DataT]], Handler[DataT]]:
    """Register ``handler`` for ``data_model``'s topic in consumer group ``group_id``."""

    def register(handler: Handler[DataT]) -> Handler[DataT]:
        async def consume(msg: KafkaMessage) -> None:
            try:
                event: CloudEvent[DataT] = CloudEvent.from_kafka(data_model, msg.headers, msg.body)
            except ValueError as exc:
                await dead_letter(
                    broker, msg, group_id=group_id, reason=f"invalid event: {exc}", attempts=0
                )
                return
            delay = settings.retry_backoff_seconds
            for attempt in range(1, settings.dlq_after_attempts + 1):
                try:
                    await handler(event)
                    return
                except PermanentError as exc:
                    await dead_letter(
                        broker,
                        msg,
                        group_id=group_id,
                        reason=f"{type(exc).__name__}: {exc}",
                        attempts=attempt,
                    )
                    return
                except Exception as exc:
                    if attempt == settings.dlq_after_attempts:
                        await dead_letter(
                            broker,
                            msg,
                            group_id=group_id,
                            reason=f"{type(exc).__name__}: {exc}",
                            attempts=attempt,
                        )
                        return
                    log.warning(
                        "handler failed, retrying",
                        extra={"event_id": event.id, "attempt": attempt, "error": repr(exc)},
                    )
                    await asyncio.sleep(delay)
                    delay *= 2

        consume.__name__ = handler.__name__
        broker.subscriber(
            data_model.topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Commit only after the handler (or the DLQ) is done; if publishing to
            # the DLQ itself fails, the exception seeks back and the message returns.
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(consume)
        return handler

    return register
