"""A message a worker cannot handle goes to the topic's DLQ with the reason."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import ServerReady, dlq_topic


async def test_poison_message_is_dead_lettered_with_its_reason(
    kafka_options: dict[str, Any],
) -> None:
    dlq = AIOKafkaConsumer(
        dlq_topic(ServerReady.topic), **kafka_options, auto_offset_reset="latest"
    )
    await dlq.start()
    await dlq.seek_to_end()
    producer = AIOKafkaProducer(**kafka_options)
    await producer.start()
    poison = f"not an event {uuid.uuid4().hex}".encode()
    try:
        await producer.send_and_wait(ServerReady.topic, poison, key=b"poison")
        groups = set()
        async with asyncio.timeout(30):
            async for record in dlq:
                if record.value != poison:
                    continue
                headers = {k: v.decode() for k, v in record.headers}
                assert headers["nbembed_dlq_reason"].startswith("invalid event")
                assert headers["nbembed_dlq_source_topic"] == ServerReady.topic
                assert record.key == b"poison"
                groups.add(headers["nbembed_dlq_consumer_group"])
                # Both consumers of server.ready dead-letter it, each once.
                if groups == {"nbembed-sync", "nbembed-gateway"}:
                    break
    finally:
        await producer.stop()
        await dlq.stop()
