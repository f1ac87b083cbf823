"""Each real component answers the way the services rely on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from infra.settings import StackSettings
from schemas import SessionRequested, all_topics, dlq_topic, hub_username
from tests.stack.helpers import eventually, start_server_and_wait


async def test_mongodb_round_trip_and_unique_index(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    collection = mongo["nbembed_test"][f"roundtrip_{uuid.uuid4().hex[:8]}"]
    try:
        await collection.create_index("key", unique=True)
        doc = {"key": "k1", "nested": {"cells": [1, 2, 3]}, "text": "Ünïcode ✓"}
        await collection.insert_one(dict(doc))
        found = await collection.find_one({"key": "k1"}, {"_id": 0})
        assert found == doc
        with pytest.raises(DuplicateKeyError):
            await collection.insert_one({"key": "k1"})
        assert await collection.count_documents({}) == 1
    finally:
        await collection.drop()


async def test_kafka_round_trip_on_every_topic(kafka_options: dict[str, Any]) -> None:
    admin = AIOKafkaAdminClient(**kafka_options)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(all_topics()) <= topics, "infra must create every topic from schemas/"

    marker = uuid.uuid4().hex.encode()
    topic = dlq_topic(SessionRequested.topic)  # a topic no service consumes
    producer = AIOKafkaProducer(**kafka_options)
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, marker, key=b"k")
        async with asyncio.timeout(20):
            async for record in consumer:
                if record.value == marker:
                    break
    finally:
        await producer.stop()
        await consumer.stop()


async def test_hub_answers_service_token_and_refuses_a_wrong_one(
    hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    me = await hub.get("/user")
    assert me.status_code == 200
    body = me.json()
    assert body["kind"] == "service" and body["name"] == "nbembed"
    # Only the scopes the services need: no full admin. `tokens` mints per-user
    # tokens, which the hub limits to the user's own trimmed role (proven in
    # tests/security/test_isolation.py).
    assert "admin-ui" not in body["scopes"] and "shutdown" not in body["scopes"]
    assert "tokens" in body["scopes"]
    assert {"admin:users", "admin:servers", "access:servers"} <= set(body["scopes"])

    async with httpx.AsyncClient(base_url=f"{stack_settings.public_hub_url}/hub/api") as anon:
        wrong = await anon.get("/user", headers={"Authorization": "token not-the-token"})
        assert wrong.status_code == 403
        users = await anon.get("/users", headers={"Authorization": "token not-the-token"})
        assert users.status_code == 403


async def test_single_user_server_spawns_and_its_contents_api_answers(
    hub: httpx.AsyncClient, stack_settings: StackSettings, hub_token: str
) -> None:
    name = hub_username("demo", f"spawn-test-{uuid.uuid4().hex}")
    assert (await hub.post(f"/users/{name}")).status_code == 201
    try:
        await start_server_and_wait(hub, name)

        base = f"{stack_settings.public_hub_url}/user/{name}/api/contents"
        auth = {"Authorization": f"token {hub_token}"}
        async with httpx.AsyncClient(headers=auth, timeout=30) as http:
            folder = await http.put(f"{base}/work", json={"type": "directory"})
            assert folder.status_code == 201
            notebook = {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [{"id": "c1", "cell_type": "markdown", "metadata": {}, "source": "hello"}],
            }
            put = await http.put(
                f"{base}/work/t.ipynb",
                json={"type": "notebook", "format": "json", "content": notebook},
            )
            assert put.status_code == 201
            got = await http.get(f"{base}/work/t.ipynb", params={"content": "1"})
            assert got.status_code == 200
            assert got.json()["content"]["cells"][0]["source"] == "hello"
            # The CSP lets the allowed host pages, and only them, frame the server.
            csp = got.headers.get("Content-Security-Policy", "")
            assert "frame-ancestors 'self' " + " ".join(stack_settings.allowed_origins) in csp
    finally:
        await hub.delete(f"/users/{name}/server")
        await hub.delete(f"/users/{name}")


async def test_hub_pages_may_be_framed_only_by_their_users_tenant(
    stack_settings: StackSettings,
) -> None:
    """A page about a user: that user's tenant's origins; any other hub page: none."""
    base = f"{stack_settings.public_hub_url}/hub"
    user = hub_username(stack_settings.tenants[0], "framed")
    async with httpx.AsyncClient() as http:
        login = await http.get(f"{base}/login")
        assert login.headers["Content-Security-Policy"] == "frame-ancestors 'self'"

        async def about_user() -> str:
            page = await http.get(f"{base}/spawn-pending/{user}")
            return str(page.headers["Content-Security-Policy"])

        async def known() -> bool:
            return await about_user() != "frame-ancestors 'self'"

        # The hub asks the gateway for a tenant's origins the first time (fail closed).
        await eventually(known)
        csp = await about_user()
    assert csp.startswith("frame-ancestors 'self' ")
    for origin in stack_settings.allowed_origins:
        assert origin in csp
