"""Retries and dead letters (services/common/kafka.py), on FastStream's in-memory broker.

The real-broker counterpart is tests/stack/test_dead_letters.py.
"""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from schemas import CloudEvent, ServerReady, dlq_topic, hub_username
from services.common import kafka as common_kafka
from services.common.kafka import (
    EventConsumer,
    Handler,
    PermanentError,
    publish_event,
    publishes,
)
from services.common.settings import ServiceSettings

SETTINGS = ServiceSettings(dlq_after_attempts=3, retry_backoff_seconds=0.001)


def _event() -> CloudEvent[ServerReady]:
    hub_user = hub_username("demo", "u")
    ready = ServerReady(
        session_id="s1",
        tenant_id="demo",
        hub_user=hub_user,
        server_path=f"/user/{hub_user}/",
        host_user_id="u",
    )
    return CloudEvent.wrap(ready, source="/test")


class Recorder:
    """Collects what lands on the DLQ: (body, headers) per message."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.dead: list[tuple[bytes, dict[str, str]]] = []

        @broker.subscriber(dlq_topic(ServerReady.topic))
        async def on_dead(msg: KafkaMessage) -> None:
            self.dead.append((msg.body, dict(msg.headers)))


def _consume_with(
    broker: KafkaBroker, handler: Handler[ServerReady], settings: ServiceSettings = SETTINGS
) -> None:
    consumer = EventConsumer(broker, group_id="g", settings=settings)
    consumer.on(ServerReady, handler)
    consumer.attach()


@pytest.fixture
def broker() -> KafkaBroker:
    return KafkaBroker()


async def test_handler_succeeding_after_transient_failures_is_not_dead_lettered(
    broker: KafkaBroker,
) -> None:
    calls: list[str] = []

    async def flaky(event: CloudEvent[ServerReady]) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise ConnectionError("hub blip")

    _consume_with(broker, flaky)
    dead = Recorder(broker)
    async with TestKafkaBroker(broker):
        event = _event()
        await publish_event(broker, event)
        assert calls == [event.id] * 3
        assert dead.dead == []


async def test_handler_failing_every_time_is_dead_lettered_with_the_reason(
    broker: KafkaBroker,
) -> None:
    calls = 0

    async def broken(event: CloudEvent[ServerReady]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    _consume_with(broker, broken)
    dead = Recorder(broker)
    async with TestKafkaBroker(broker):
        event = _event()
        await publish_event(broker, event)
        assert calls == SETTINGS.dlq_after_attempts
        [(body, headers)] = dead.dead
        assert body == event.kafka_value()  # the original message, untouched
        assert headers["ce_id"] == event.id
        assert headers["nbembed_dlq_reason"] == "RuntimeError: boom"
        assert headers["nbembed_dlq_attempts"] == str(SETTINGS.dlq_after_attempts)
        assert headers["nbembed_dlq_consumer_group"] == "g"


def _store_down_for(tries: int) -> tuple[list[int], Handler[ServerReady]]:
    """A handler that cannot reach the store ``tries`` times, then succeeds."""
    calls: list[int] = []

    async def needs_the_store(event: CloudEvent[ServerReady]) -> None:
        calls.append(1)
        if len(calls) <= tries:
            raise (AutoReconnect if len(calls) % 2 else ServerSelectionTimeoutError)("refused")

    return calls, needs_the_store


async def test_a_store_outage_spends_no_attempt_and_dead_letters_nothing(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common_kafka, "STORE_WAIT_SECONDS", 0.001)
    tries = SETTINGS.dlq_after_attempts * 4  # far more failures than the retry budget
    calls, handler = _store_down_for(tries)
    _consume_with(broker, handler)
    dead = Recorder(broker)
    async with TestKafkaBroker(broker):
        await publish_event(broker, _event())
        assert len(calls) == tries + 1
        assert dead.dead == []


async def test_a_store_outage_longer_than_the_tolerance_counts_as_retries(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common_kafka, "STORE_WAIT_SECONDS", 0.001)
    calls, handler = _store_down_for(1000)
    _consume_with(broker, handler, SETTINGS.model_copy(update={"store_outage_seconds": 0}))
    dead = Recorder(broker)
    async with TestKafkaBroker(broker):
        await publish_event(broker, _event())
        assert len(calls) == SETTINGS.dlq_after_attempts
        [(_, headers)] = dead.dead
        assert headers["nbembed_dlq_reason"].startswith(("AutoReconnect", "ServerSelection"))


class MovedAway:
    """What a handler sees of a consumer whose partition a rebalance gave to another."""

    def __init__(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.raw_message = record
        self.consumer = self

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.raw_message.topic, self.raw_message.partition + 1)}


async def test_waiting_for_the_store_stops_when_the_partition_moves_away(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common_kafka, "STORE_WAIT_SECONDS", 0.001)
    calls, handler = _store_down_for(1000)
    consumer = EventConsumer(broker, group_id="g", settings=SETTINGS)
    record = ConsumerRecord(ServerReady.topic, 3, 7, 0, 0, b"k", b"v", None, 1, 1, ())
    # Left to the new owner: neither waited on nor dead-lettered (that would publish).
    await consumer._handle(MovedAway(record), _event(), handler)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_permanent_errors_and_invalid_events_skip_the_retries(broker: KafkaBroker) -> None:
    calls = 0

    async def refuses(event: CloudEvent[ServerReady]) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("notebook invalid")

    _consume_with(broker, refuses)
    dead = Recorder(broker)
    async with TestKafkaBroker(broker):
        await publish_event(broker, _event())
        assert calls == 1
        await broker.publish(b"garbage", topic=ServerReady.topic)
        assert calls == 1  # never reached the handler
        reasons = [headers["nbembed_dlq_reason"] for _, headers in dead.dead]
        assert reasons[0] == "PermanentError: notebook invalid"
        assert reasons[1] == "invalid event: unknown type None"


async def test_a_payload_invalid_for_its_type_is_dead_lettered_with_why(
    broker: KafkaBroker,
) -> None:
    calls = 0

    async def handler(event: CloudEvent[ServerReady]) -> None:
        nonlocal calls
        calls += 1

    _consume_with(broker, handler)
    dead = Recorder(broker)
    headers = {k: v for k, v in _event().kafka_headers().items() if k != "content-type"}
    async with TestKafkaBroker(broker):
        await broker.publish(b'{"session_id": 1}', topic=ServerReady.topic, headers=headers)
        assert calls == 0
        [(body, dead_headers)] = dead.dead
        assert body == b'{"session_id": 1}'
        assert dead_headers["nbembed_dlq_reason"].startswith("invalid event: ")
        assert "validation error" in dead_headers["nbembed_dlq_reason"]
        assert dead_headers["nbembed_dlq_attempts"] == "0"


async def test_events_go_out_through_the_declared_typed_publisher(broker: KafkaBroker) -> None:
    publishes(broker, "test", ServerReady)
    [publisher] = broker.publishers
    async with TestKafkaBroker(broker):
        event = _event()
        await publish_event(broker, event)
        publisher.mock.assert_called_once()  # type: ignore[union-attr]


@pytest.mark.parametrize(("concurrency", "wait_ms"), [(1, 20), (3, 300)])
def test_consumers_fetch_with_the_wait_for_what_they_hold(
    broker: KafkaBroker, concurrency: int, wait_ms: int
) -> None:
    """A consumer of many partitions waits briefly (an event on a partition left out of
    the fetch in flight waits that long); a concurrent subscriber's consumers, one
    partition each, wait long: their fetch returns as soon as an event arrives."""
    settings = ServiceSettings(kafka_fetch_max_wait_ms=20, kafka_partition_fetch_max_wait_ms=300)
    consumer = EventConsumer(broker, group_id="g", settings=settings)
    consumer.on(ServerReady, _noop)
    consumer.attach(concurrency=concurrency)
    (subscriber,) = broker.subscribers
    assert subscriber._connection_args["fetch_max_wait_ms"] == wait_ms  # type: ignore[attr-defined]
    assert ServiceSettings().kafka_fetch_max_wait_ms < 500


async def _noop(event: CloudEvent[ServerReady]) -> None:
    return None
