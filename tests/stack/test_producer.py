"""A publish Kafka refuses must not stop a service's later publishes.

aiokafka's idempotent producer numbers each batch per partition; when the
broker refuses one (too large here; in CI, one that expired while its partition
had no leader after a broker restart), every later batch to that partition is
refused with ``OutOfOrderSequenceNumber`` until the process restarts
(aio-libs/aiokafka#1017). A gateway wedged that way answered 503 "Kafka is
unavailable" a minute after Kafka was back. This runs the services' own
producer (`make_broker`) against the stack's real Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from services.common.kafka import make_broker
from services.common.settings import ServiceSettings

TOPIC_LIMIT = 10_000
"""The test topic's ``max.message.bytes``: far below what the producer itself allows (1 MB)."""


@pytest.fixture
async def small_topic(kafka_options: dict[str, Any]) -> AsyncIterator[str]:
    """A one-partition topic that refuses records over `TOPIC_LIMIT` bytes."""
    topic = f"nbembed.test-refused-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kafka_options)
    await admin.start()
    try:
        limit = {"max.message.bytes": str(TOPIC_LIMIT)}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=limit)])
        yield topic
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def records_in(kafka_options: dict[str, Any], topic: str) -> int:
    consumer = AIOKafkaConsumer(**kafka_options)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        offsets: dict[TopicPartition, int] = await consumer.end_offsets([partition])
        return offsets[partition]
    finally:
        await consumer.stop()


async def test_a_publish_kafka_refuses_leaves_later_publishes_to_its_partition_working(
    kafka_options: dict[str, Any], small_topic: str
) -> None:
    settings = ServiceSettings(
        kafka_bootstrap=kafka_options["bootstrap_servers"],
        kafka_username=kafka_options["sasl_plain_username"],
        kafka_password=kafka_options["sasl_plain_password"],
    )
    broker = make_broker(settings, "test-refused-publish")
    await broker.connect()
    try:
        await broker.publish(b"before", topic=small_topic)
        with pytest.raises(MessageSizeTooLargeError):
            await broker.publish(b"x" * (2 * TOPIC_LIMIT), topic=small_topic)
        for n in range(3):
            # With an idempotent aiokafka producer each of these raised
            # OutOfOrderSequenceNumber, for as long as the process lived.
            await broker.publish(f"after {n}".encode(), topic=small_topic)
    finally:
        await broker.stop()
    assert await records_in(kafka_options, small_topic) == 4
