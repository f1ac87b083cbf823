"""``python -m infra lag``: how far behind each consumer group is, per topic.

Lag is the messages a group has not committed yet: the end offset of each
partition minus the group's committed offset (a partition the group never
committed counts whole). It is the first figure to read when sessions or
saves slow down: a growing lag on one group says which service to scale
(see docs/operations.md). The groups and topics come from the access table
(infra/kafka_access.py), so a new consumer is covered without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra import kafka, kafka_access
from infra.settings import StackSettings


@dataclass(frozen=True)
class Lag:
    """One group's backlog on one topic."""

    group: str
    topic: str
    partitions: int
    behind: int


def groups() -> dict[str, set[str]]:
    """Every consumer group of the services and the topics it reads."""
    return {
        group: {event.topic for event in events}
        for access in kafka_access.ACCESS.values()
        for group, events in access.consumes.items()
    }


async def measure(settings: StackSettings) -> list[Lag]:
    """The lag of every group on every topic it reads, as the broker sees it now."""
    options = kafka.client_options(settings)
    admin = AIOKafkaAdminClient(**options)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        rows = []
        for group, topics in sorted(groups().items()):
            committed = await admin.list_consumer_group_offsets(group)
            for topic in sorted(topics):
                partitions = [
                    TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
                ]
                ends = await consumer.end_offsets(partitions) if partitions else {}
                behind = sum(
                    end - max(committed[tp].offset if tp in committed else 0, 0)
                    for tp, end in ends.items()
                )
                rows.append(Lag(group, topic, len(partitions), behind))
        return rows
    finally:
        await consumer.stop()
        await admin.close()
