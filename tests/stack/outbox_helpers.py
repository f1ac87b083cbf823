"""Helpers for the outbox and dead-letter stack tests."""

from __future__ import annotations

import uuid

import httpx

from schemas import hub_username
from tests.stack.helpers import open_session


async def gateway_made_its_tables(gateway: httpx.AsyncClient, hub: httpx.AsyncClient) -> None:
    """Open a session and save once through the gateway, so its collections exist as its own.

    Tests write records into the gateway's collections with the store's admin
    credential (as a crashed gateway would have left them). A collection the
    admin created first would belong to the admin, and the gateway's role
    could not write it; made by the gateway, the admin may write it too.
    """
    user_id = f"tables-{uuid.uuid4().hex[:12]}"
    try:
        session = await open_session(gateway, user_id=user_id, notebook_name="tables")
        assert session["status"] == "ready", session
        save = await gateway.post(f"/v1/sessions/{session['id']}/saves")
        assert save.status_code == 202, save.text
        done = await gateway.get(f"/v1/saves/{save.json()['id']}", params={"wait": 30})
        assert done.json()["status"] == "stored", done.text
    finally:
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")
