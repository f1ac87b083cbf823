"""Events published by the gateway travel through the real broker to the workers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import CloudEvent, SessionRequested, hub_username
from tests.stack.helpers import wait_for_final_status


async def test_gateway_event_reaches_the_provisioner_through_kafka(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, kafka_options: dict[str, Any]
) -> None:
    # Watch the topic ourselves, from its current end, in a group of our own.
    watcher = AIOKafkaConsumer(
        SessionRequested.topic,
        **kafka_options,
        group_id=f"test-watch-{uuid.uuid4().hex}",
        auto_offset_reset="latest",
    )
    await watcher.start()
    await watcher.seek_to_end()
    try:
        user_id = f"flow-{uuid.uuid4().hex}"
        created = await gateway.post("/v1/sessions", json={"user_id": user_id})
        assert created.status_code == 202
        session_id = created.json()["id"]

        # 1. The gateway's event is on the broker as a binary-mode CloudEvent.
        async with asyncio.timeout(20):
            async for record in watcher:
                headers = dict(record.headers)
                if headers.get("ce_subject") == session_id.encode():
                    break
        event = CloudEvent.from_kafka(SessionRequested, headers, record.value)
        assert event.data.hub_user == hub_username("demo", user_id)
        assert record.key == event.data.hub_user.encode()  # ordered per hub user

        # 2. The provisioner consumed it: the hub user exists, the session moved on.
        final = await wait_for_final_status(gateway, session_id)
        assert final["status"] == "ready", final
        assert (await hub.get(f"/users/{event.data.hub_user}")).status_code == 200

        # 3. ...and committed its offset past that message (at-least-once, then acked).
        partition = TopicPartition(record.topic, record.partition)
        admin = AIOKafkaAdminClient(**kafka_options)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("nbembed-provisioner")
        finally:
            await admin.close()
        assert offsets[partition].offset > record.offset
    finally:
        await watcher.stop()
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")
