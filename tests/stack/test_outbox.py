"""A 202 is a promise: a record left with its event unpublished still completes.

A gateway that dies between writing a record and publishing its event leaves
the event pending in the record's outbox. These tests leave a record exactly
so in the real store (as that gateway would have) and check that the real
gateway completes it: a retry with the same Idempotency-Key, or the relay
alone. The Kafka-down cases are in tests/faults/test_broker_down.py.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from infra import store
from schemas import CloudEvent, SessionRequested, hub_username
from services.gateway.api import IDEMPOTENCY_NAMESPACE, SOURCE
from services.gateway.outbox import MARKERS, event_entry
from tests.stack.helpers import wait_for_final_status
from tests.stack.outbox_helpers import gateway_made_its_tables

TENANT = "demo"


async def _leave_pending(
    mongo: AsyncMongoClient[dict[str, Any]], session_id: str, user_id: str, *, marked: bool
) -> None:
    """Write a session as a gateway that crashed before publishing would have left it."""
    hub_user = hub_username(TENANT, user_id)
    requested = SessionRequested(
        session_id=session_id,
        tenant_id=TENANT,
        hub_user=hub_user,
        host_user_id=user_id,
        notebook_name="left pending",
    )
    now = datetime.now(UTC)
    entries = event_entry(CloudEvent.wrap(requested, source=SOURCE, subject=session_id))
    database = mongo[store.DATABASES["gateway"]]
    await database["sessions"].insert_one(
        {
            "_id": session_id,
            "tenant_id": TENANT,
            "host_user_id": user_id,
            "hub_user": hub_user,
            "notebook_id": None,
            "notebook_name": "left pending",
            "inputs": [],
            "restricted": False,
            "browser_token_sha256": hashlib.sha256(b"unused").hexdigest(),
            "outbox": entries,
            "status_rank": 0,
            "created_at": now,
            "updated_at": now,
        }
    )
    if marked:
        await database[MARKERS].insert_one(
            {
                "_id": f"sessions/{session_id}",
                "collection": "sessions",
                "record_id": session_id,
                "token": uuid.uuid4().hex,
                "at": now - timedelta(minutes=1),
                "entries": list(entries),
            }
        )


async def test_a_retry_with_the_same_key_publishes_what_the_first_attempt_left(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    await gateway_made_its_tables(gateway, hub)
    key = f"crashed-{uuid.uuid4().hex}"
    user_id = f"retry-{uuid.uuid4().hex[:12]}"
    session_id = uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{TENANT}:{key}").hex
    # No marker: the relay cannot know; only the retry can complete it.
    await _leave_pending(mongo, session_id, user_id, marked=False)
    try:
        retried = await gateway.post(
            "/v1/sessions",
            json={"user_id": user_id, "notebook_name": "left pending"},
            headers={"Idempotency-Key": key},
        )
        assert retried.status_code == 202, retried.text
        assert retried.json()["id"] == session_id
        final = await wait_for_final_status(gateway, session_id, timeout=90)
        assert final["status"] == "ready", final
        markers = mongo[store.DATABASES["gateway"]][MARKERS]
        assert await markers.find_one({"_id": f"sessions/{session_id}"}) is None
    finally:
        await hub.delete(f"/users/{hub_username(TENANT, user_id)}/server")


async def test_the_relay_publishes_what_a_crashed_request_left(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    await gateway_made_its_tables(gateway, hub)
    session_id = uuid.uuid4().hex
    user_id = f"relay-{uuid.uuid4().hex[:12]}"
    await _leave_pending(mongo, session_id, user_id, marked=True)
    try:
        # Nobody calls the gateway for it: the relay finds the marker.
        final = await wait_for_final_status(gateway, session_id, timeout=90)
        assert final["status"] == "ready", final
        markers = mongo[store.DATABASES["gateway"]][MARKERS]
        assert await markers.find_one({"_id": f"sessions/{session_id}"}) is None
    finally:
        await hub.delete(f"/users/{hub_username(TENANT, user_id)}/server")
