"""Kafka the nbembed way: CloudEvents out, idempotent handlers in, DLQ after retries.

Every service consumes through one `EventConsumer`. Offsets are committed
only after the handler (or the dead-lettering) is done, so a crash
mid-handling redelivers the message (at-least-once); handlers must therefore
be idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar, Union
from weakref import WeakKeyDictionary

from aiokafka import ConsumerRecord, TopicPartition
from faststream import AckPolicy, BaseMiddleware, ContextRepo, StreamMessage
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.publisher import DefaultPublisher
from faststream.security import SASLScram512
from prometheus_client import Counter

from schemas import CloudEvent, EventData, dlq_topic
from services.common import tracing
from services.common.metrics import kafka_middleware
from services.common.mongo import store_unavailable
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

STORE_WAIT_SECONDS = 1.0
"""Between two tries of a handler that could not reach the store (see `EventConsumer`)."""

DataT = TypeVar("DataT", bound=EventData)
Handler = Callable[[CloudEvent[DataT]], Awaitable[None]]

DEAD_LETTERS = Counter(
    "nbembed_dead_letters",
    "Messages this process copied to a dead-letter topic, by source topic and consumer group.",
    ["topic", "group"],
)


class PermanentError(Exception):
    """A failure retrying cannot fix (bad content, unknown notebook): dead-letter at once."""


PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "enable_idempotence": False}
"""How every nbembed producer writes: acknowledged by all in-sync replicas, not idempotent.

aiokafka's idempotent producer cannot recover from a lost sequence number: a
batch that fails after it was numbered (one that expired while its partition
had no leader during a Kafka restart, or one the broker answered
``UNKNOWN_PRODUCER_ID``) leaves every later batch to that partition refused
with ``OutOfOrderSequenceNumber`` until the process restarts (aio-libs/aiokafka
#1017; Java's producer bumps its epoch instead). CI saw a gateway wedged that
way a minute after a broker outage. What idempotence would add, no duplicate
from the producer's own retry, nbembed gets anyway: every consumer is
idempotent, because the outbox relay may publish an event twice regardless.
aiokafka sends one request per broker at a time, so a retry keeps the order.
"""


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never lingers.

    ``acks=all`` means an acknowledged publish survives a broker failover;
    ``linger_ms=0`` keeps the hot path free of batching delays. The producer is
    deliberately *not* idempotent (`PRODUCER_OPTIONS`). With a Kafka
    username the broker logs in as that service (SASL/SCRAM-SHA-512) and Kafka's
    ACLs bound what it may read and write. FastStream's Prometheus middleware
    counts and times every message consumed and published; with tracing on, its
    telemetry middleware traces every publish and consume (`tracing`).
    """
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        security=_security(settings),
        client_id=client_id,
        **PRODUCER_OPTIONS,
        linger_ms=0,
        # Tracing's first (its carrier must run outermost), then the metrics.
        middlewares=(*tracing.broker_middlewares(), kafka_middleware(client_id)),
        logger=logging.getLogger(f"{client_id}.kafka"),
    )


def _security(settings: ServiceSettings) -> SASLScram512 | None:
    if settings.kafka_username is None or settings.kafka_password is None:
        return None
    return SASLScram512(settings.kafka_username, settings.kafka_password.get_secret_value())


_PUBLISHERS: WeakKeyDictionary[KafkaBroker, dict[str, DefaultPublisher]] = WeakKeyDictionary()


def publishes(broker: KafkaBroker, service: str, *data_models: type[EventData]) -> None:
    """Declare the events a service publishes: one typed FastStream publisher per topic.

    `publish_event` sends through them, and FastStream's AsyncAPI document shows
    each as a ``send`` operation whose payload is the topic's event model(s).
    """
    by_topic: dict[str, list[type[EventData]]] = {}
    for model in data_models:
        by_topic.setdefault(model.topic, []).append(model)
    declared = _PUBLISHERS.setdefault(broker, {})
    for topic, models in by_topic.items():
        names = ", ".join(m.event_type for m in models)
        declared[topic] = broker.publisher(
            topic,
            schema=models[0] if len(models) == 1 else Union[tuple(models)],  # noqa: UP007
            title=f"{topic}:{service}",
            description=f"{service} publishes {names} (CloudEvents in Kafka binary mode, "
            "keyed for ordering).",
        )


async def publish_event(broker: KafkaBroker, event: CloudEvent[DataT]) -> None:
    """Publish ``event`` on its payload's topic, keyed for ordering, in binary mode.

    The event carries the current trace context unless it has its own (an
    outbox republish); the publish runs in that context.
    """
    event = tracing.stamp(event)
    with tracing.resumed(event):
        await _publish(broker, event)


async def _publish(broker: KafkaBroker, event: CloudEvent[DataT]) -> None:
    topic = event.data.topic
    publisher = _PUBLISHERS.get(broker, {}).get(topic)
    if publisher is None:  # not declared with `publishes`: missing from the AsyncAPI
        log.warning("publishing on an undeclared topic", extra={"topic": topic})
        await broker.publish(
            event.kafka_value(), topic=topic, key=event.kafka_key(), headers=event.kafka_headers()
        )
        return
    await publisher.publish(
        event.kafka_value(), key=event.kafka_key(), headers=event.kafka_headers()
    )


async def dead_letter(
    broker: KafkaBroker, msg: KafkaMessage, *, group_id: str, reason: str, attempts: int
) -> None:
    """Copy a failed message to its topic's DLQ with why it failed, keeping key and headers."""
    raw = msg.raw_message
    headers = {k: v for k, v in msg.headers.items() if isinstance(v, str)}
    await _dead_letter(
        broker,
        raw,
        headers,
        group_id=group_id,
        reason=reason,
        attempts=attempts,
    )


async def _dead_letter(
    broker: KafkaBroker,
    raw: ConsumerRecord[Any, Any],
    headers: dict[str, str],
    *,
    group_id: str,
    reason: str,
    attempts: int,
) -> None:
    topic = raw.topic
    headers = {
        **headers,
        "nbembed_dlq_reason": reason[:2000],
        "nbembed_dlq_source_topic": topic,
        "nbembed_dlq_consumer_group": group_id,
        "nbembed_dlq_source_partition": str(raw.partition),
        "nbembed_dlq_source_offset": str(raw.offset),
        "nbembed_dlq_attempts": str(attempts),
        "nbembed_dlq_time": datetime.now(UTC).isoformat(),
    }
    await broker.publish(raw.value, topic=dlq_topic(topic), key=raw.key, headers=headers)
    DEAD_LETTERS.labels(topic, group_id).inc()
    log.error(
        "dead-lettered message", extra={"topic": topic, "offset": raw.offset, "reason": reason}
    )


class _DeadLetterFailed(Exception):
    """Copying to the DLQ failed: the message must come back (its offset stays)."""


def _json_body(msg: StreamMessage[Any]) -> Any:
    """The value as JSON whatever its content-type header (a filter validated it first)."""
    return json.loads(msg.body)


class EventConsumer:
    """One consumer-group member per topic, with a typed handler per event type.

    Each topic gets a FastStream subscriber in the group; each event type on it
    a handler whose body is the type's pydantic model, chosen by the CloudEvents
    ``ce_type`` header, so FastStream's AsyncAPI document describes every
    channel and message (``python -m services.asyncapi``). A message is
    handled only once it parses as the expected CloudEvent; its handler is
    tried ``dlq_after_attempts`` times with exponential backoff, and a message
    that still fails, or is no valid event, is copied to ``<topic>.dlq`` with
    the reason before its offset is committed.
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

    def attach(self, *, concurrency: int = 1, background: bool = False) -> None:
        """Register the consumer with the broker; call once, after every `on`.

        With ``concurrency`` > 1 (one topic only), that many consumers share the
        topic's partitions: events with different keys run in parallel, events
        with the same key stay in order, and offsets are still committed only
        after handling. A ``background`` consumer is one nobody waits for (the
        audit trail): it fetches with the long wait, as idle fetches cost CPU.
        """
        if concurrency > 1 and len(self._routes) != 1:
            raise ValueError("concurrent consumption needs exactly one topic")
        router = KafkaRouter(middlewares=[self._invalid_to_dlq])
        for topic, routes in self._routes.items():
            subscriber = router.subscriber(
                topic,
                group_id=self._group_id,
                auto_offset_reset="earliest",
                # Commit only after the handler (or the DLQ) is done; if publishing to
                # the DLQ itself fails, the exception seeks back and the message returns.
                ack_policy=AckPolicy.NACK_ON_ERROR,
                max_workers=concurrency,
                fetch_max_wait_ms=self._fetch_max_wait_ms(concurrency, background),
                heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
                max_poll_interval_ms=int(self._settings.kafka_max_poll_interval_seconds * 1000),
                decoder=_json_body,
                title=f"{topic}:{self._group_id}",
                description=f"Consumer group {self._group_id}. Every message is a "
                "CloudEvent in Kafka binary mode (ce_* headers); an unknown type or an "
                f"invalid payload, or one that fails after retries, goes to {dlq_topic(topic)}.",
            )
            for data_model, handler in routes.values():
                subscriber(self._typed(data_model, handler), filter=_parses_as(data_model))
        self._broker.include_router(router)

    def _fetch_max_wait_ms(self, concurrency: int, background: bool) -> int:
        """A concurrent subscriber's consumers hold a partition each; a single one holds many."""
        if concurrency > 1 or background:
            return self._settings.kafka_partition_fetch_max_wait_ms
        return self._settings.kafka_fetch_max_wait_ms

    def _typed(self, data_model: type[DataT], handler: Handler[DataT]) -> Callable[..., Any]:
        """A FastStream handler whose body is ``data_model``: what the AsyncAPI shows."""

        async def handle(data: Any, msg: KafkaMessage) -> None:
            event = CloudEvent.from_kafka(data_model, msg.headers, msg.body)
            await self._handle(msg, event, handler)

        # FastStream reads the body's type from the annotations (the document's payload).
        handle.__annotations__ = {"data": data_model, "msg": KafkaMessage, "return": None}
        handle.__name__ = handle.__qualname__ = data_model.__name__
        handle.__doc__ = f"{data_model.event_type}: {data_model.__doc__ or ''}".strip()
        return handle

    async def _handle(
        self, msg: KafkaMessage, event: CloudEvent[Any], handler: Handler[Any]
    ) -> None:
        """Run ``handler``; retry, wait out a store outage, or dead-letter.

        While the store cannot be reached, the handler is tried again every
        second without spending an attempt, for up to ``store_outage_seconds``:
        this consumer's partitions wait (their messages need the store too) and
        readiness is red meanwhile, but nothing acknowledged fails for an
        outage. If a rebalance moves the message's partition away meanwhile,
        the message is left to its new owner, uncommitted here.
        """
        loop = asyncio.get_running_loop()
        outage_ends = loop.time() + self._settings.store_outage_seconds
        delay = self._settings.retry_backoff_seconds
        attempts = self._settings.dlq_after_attempts
        attempt = 0
        while True:
            try:
                await handler(event)
                return
            except Exception as exc:
                if store_unavailable(exc) and loop.time() < outage_ends:
                    if not _still_assigned(msg):
                        # A rebalance gave the partition to another member, which handles
                        # this message from the last commit: two handlers of one
                        # message would write the same documents at once.
                        log.warning(
                            "partition moved while waiting for the store; left to its owner",
                            extra={"event_id": event.id},
                        )
                        return
                    log.warning(
                        "store unavailable, waiting for it",
                        extra={"event_id": event.id, "error": repr(exc)},
                    )
                    await asyncio.sleep(STORE_WAIT_SECONDS)
                    continue
                attempt += 1
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
        try:
            await dead_letter(
                self._broker, msg, group_id=self._group_id, reason=reason, attempts=attempts
            )
        except Exception as exc:
            raise _DeadLetterFailed(repr(exc)) from exc

    def _invalid_reason(self, raw: ConsumerRecord[Any, Any], headers: dict[str, str]) -> str:
        """Why no handler took ``raw``: an unknown type, or the type's payload is invalid."""
        event_type = headers.get("ce_type")
        route = self._routes.get(raw.topic, {}).get(event_type or "")
        if route is None:
            return f"invalid event: unknown type {event_type!r}"
        try:
            CloudEvent.from_kafka(route[0], headers, raw.value)
        except ValueError as exc:
            return f"invalid event: {exc}"
        return "invalid event: refused by the consumer"

    def _invalid_to_dlq(self, raw: Any, /, *, context: ContextRepo) -> BaseMiddleware:
        """The router's middleware: a message no handler took goes to the DLQ, committed."""
        return _InvalidToDlq(raw, context=context, consumer=self)


class _InvalidToDlq(BaseMiddleware):
    """Dead-letters a message that no typed handler accepted (or whose body FastStream
    refused), then lets its offset be committed; a failed DLQ copy still returns it."""

    def __init__(self, raw: Any, /, *, context: ContextRepo, consumer: EventConsumer) -> None:
        super().__init__(raw, context=context)
        self._consumer = consumer

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool:
        if exc_val is None or not isinstance(exc_val, Exception):
            return False
        if isinstance(exc_val, _DeadLetterFailed):
            return False
        raw: ConsumerRecord[Any, Any] = self.msg
        headers = {
            name: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            for name, value in (raw.headers or ())
        }
        consumer = self._consumer
        reason = consumer._invalid_reason(raw, headers)
        await _dead_letter(
            consumer._broker,
            raw,
            headers,
            group_id=consumer._group_id,
            reason=reason,
            attempts=0,
        )
        return True


def _still_assigned(msg: KafkaMessage) -> bool:
    """Whether the consumer that fetched ``msg`` still holds its partition.

    Returning from the handler without it commits nothing for that partition:
    aiokafka commits the positions of the partitions it holds.
    """
    assignment = getattr(msg.consumer, "assignment", None)
    raw = msg.raw_message
    if assignment is None or isinstance(raw, tuple):  # FastStream's test broker; batches
        return True
    return TopicPartition(raw.topic, raw.partition) in assignment()


def _parses_as(data_model: type[EventData]) -> Callable[[StreamMessage[Any]], Awaitable[bool]]:
    """A handler filter: the message is a valid CloudEvent of ``data_model``'s type."""

    async def parses(msg: StreamMessage[Any]) -> bool:
        if msg.headers.get("ce_type") != data_model.event_type:
            return False
        try:
            CloudEvent.from_kafka(data_model, msg.headers, msg.body)
        except ValueError:
            return False
        return True

    return parses
