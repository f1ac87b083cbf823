"""A message a worker cannot handle goes to the topic's DLQ with the reason."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from infra import dlq, store
from infra.settings import StackSettings
from schemas import NotebookSaved, ServerReady, SessionReady, dlq_topic, hub_username
from schemas.dead_letters import REPLAYED_FROM, DeadLetter
from tests.stack.helpers import eventually
from tests.stack.outbox_helpers import gateway_made_its_tables

Doc = dict[str, Any]


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
                # Sync alone reads its commands (the gateway reads session-status).
                if groups == {"nbembed-sync"}:
                    break
    finally:
        await producer.stop()
        await dlq.stop()


def _poison(event_type: str, **fields: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A message of ``event_type`` whose payload is no valid event: dead-lettered at once."""
    headers = {
        "ce_specversion": "1.0",
        "ce_id": uuid.uuid4().hex,
        "ce_source": "/tests",
        "ce_type": event_type,
        "ce_time": datetime.now(UTC).isoformat(),
    }
    return json.dumps(fields).encode(), [(k, v.encode()) for k, v in headers.items()]


async def _record(mongo: AsyncMongoClient[dict[str, Any]], collection: str, doc: Doc) -> None:
    now = datetime.now(UTC)
    database = mongo[store.DATABASES["gateway"]]
    await database[collection].insert_one(
        {**doc, "status_rank": 0, "created_at": now, "updated_at": now}
    )


async def test_a_dead_lettered_command_fails_its_session_and_its_save_with_a_reason(
    kafka_options: dict[str, Any],
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    await gateway_made_its_tables(gateway, hub)
    session_id, save_id = uuid.uuid4().hex, uuid.uuid4().hex
    hub_user = hub_username("demo", f"dlq-{session_id[:8]}")
    # A session waiting for sync, a save waiting for sync (as the gateway records them).
    await _record(
        mongo,
        "sessions",
        {"_id": session_id, "tenant_id": "demo", "hub_user": hub_user, "host_user_id": "u"}
        | {"notebook_id": None, "notebook_name": "x"},
    )
    await _record(
        mongo,
        "saves",
        {"_id": save_id, "tenant_id": "demo", "notebook_id": "nb-dlq", "hub_user": hub_user}
        | {"session_id": None},
    )
    producer = AIOKafkaProducer(**kafka_options)
    await producer.start()
    try:
        value, headers = _poison(ServerReady.event_type, session_id=session_id)
        await producer.send_and_wait(ServerReady.topic, value, key=b"dlq", headers=headers)
        value, headers = _poison(NotebookSaved.event_type, save_id=save_id)
        await producer.send_and_wait(NotebookSaved.topic, value, key=b"dlq", headers=headers)
    finally:
        await producer.stop()

    session = (await gateway.get(f"/v1/sessions/{session_id}", params={"wait": 30})).json()
    assert session["status"] == "failed", session
    assert session["failure"]["code"] == "internal"
    reason = session["failure"]["reason"]
    assert "putting the notebook on the user's server" in reason, reason
    assert "invalid event" in reason and "nbembed.servers.dlq" in reason, reason
    save = (await gateway.get(f"/v1/saves/{save_id}", params={"wait": 30})).json()
    assert save["status"] == "failed", save
    assert save["failure"]["code"] == "internal"
    assert "storing the saved notebook" in save["failure"]["reason"]


async def test_dlq_list_shows_and_replay_republishes_each_dead_letter_once(
    kafka_options: dict[str, Any], stack_settings: StackSettings
) -> None:
    # A status event: both of the gateway's groups (projection, audit trail) read it.
    topic = SessionReady.topic
    marker = uuid.uuid4().hex
    value, headers = _poison(SessionReady.event_type, session_id=marker)
    producer = AIOKafkaProducer(**kafka_options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=marker.encode(), headers=headers)
    finally:
        await producer.stop()

    async def ours() -> list[tuple[DeadLetter, bool]]:
        letters = await dlq.list_letters(kafka_options, topic)
        return [(letter, done) for letter, done in letters if letter.key == marker.encode()]

    await eventually(lambda: _at_least(ours, 2), timeout=60)
    listed = await ours()
    groups = {letter.consumer_group for letter, _ in listed}
    assert groups == {"nbembed-gateway", "nbembed-gateway-audit"}
    assert all(not done and letter.reason.startswith("invalid event") for letter, done in listed)
    first, _ = listed[0]
    assert first.source[0] == topic and first.source[2] >= 0

    # The command line shows them too.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra",
        "dlq",
        "list",
        topic,
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, _ = await cli.communicate()
    assert cli.returncode == 0
    shown = out.decode()
    assert f"key={marker}" in shown and "reason: invalid event" in shown

    watcher = AIOKafkaConsumer(topic, **kafka_options, auto_offset_reset="latest")
    await watcher.start()
    await watcher.seek_to_end()
    try:
        replayed = await dlq.replay(kafka_options, dlq_topic(topic))
        mine = [letter for letter in replayed if letter.key == marker.encode()]
        assert len(mine) == 1  # two groups dead-lettered it; it goes back once
        async with asyncio.timeout(30):
            async for record in watcher:
                if record.key == marker.encode():
                    assert record.value == value
                    sent = {k: v.decode() for k, v in record.headers}
                    assert sent["ce_id"] == dict(headers)["ce_id"].decode()
                    assert sent[REPLAYED_FROM].startswith(dlq_topic(topic) + ":")
                    break
    finally:
        await watcher.stop()
    # Replaying again republishes none of the letters replayed already.
    again = await dlq.replay(kafka_options, topic)
    replayed_positions = {(letter.partition, letter.offset) for letter in replayed}
    assert not replayed_positions & {(letter.partition, letter.offset) for letter in again}
    first_listed = {(letter.partition, letter.offset) for letter, _ in listed}
    assert all(
        done for letter, done in await ours() if (letter.partition, letter.offset) in first_listed
    )


async def _at_least(found: Callable[[], Awaitable[list[Any]]], count: int) -> bool:
    return len(await found()) >= count
