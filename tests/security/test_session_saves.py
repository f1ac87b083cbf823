"""A browser token reads the saves of its own session's file, and nothing else.

``GET /v1/sessions/{id}/saves?last_modified=T`` (how the SDK learns the
revision of a Ctrl-S) names a save by the session's user, path and the
timestamp, all but the timestamp taken from the session. The attacks: one
session's browser token asks for another user's session, for its own session
with the other's timestamp, and for the other's save by id; another tenant's
API key asks for the session. The control: the owner's token finds the save.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import wait_for_final_status

STAMP = "2026-11-27T02:03:04.123456Z"


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@pytest.fixture
async def two_sessions(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> AsyncIterator[list[dict[str, Any]]]:
    users = [f"saves-{who}-{uuid.uuid4().hex[:10]}" for who in ("alice", "bob")]
    sessions = []
    for user in users:
        created = await gateway.post("/v1/sessions", json={"user_id": user, "notebook_name": "x"})
        assert created.status_code == 202, created.text
        sessions.append({**created.json()})
    for session in sessions:
        ready = await wait_for_final_status(gateway, session["id"])
        assert ready["status"] == "ready", ready
    yield sessions
    for user in users:
        await hub.delete(f"/users/{hub_username('demo', user)}/server")


def as_browser(stack_settings: StackSettings, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


async def test_a_browser_token_reads_only_its_own_sessions_saves(
    gateway: httpx.AsyncClient,
    stack_settings: StackSettings,
    other_api_key: str,
    two_sessions: list[dict[str, Any]],
) -> None:
    alice, bob = two_sessions
    saved = await gateway.post(f"/v1/sessions/{bob['id']}/saves", json={"last_modified": STAMP})
    assert saved.status_code == 202, saved.text
    query = {"last_modified": STAMP, "wait": 0}

    async with as_browser(stack_settings, bob["browser_token"]) as owner:
        found = await owner.get(f"/v1/sessions/{bob['id']}/saves", params=query)
        assert found.status_code == 200, found.text  # control
        assert found.json()["id"] == saved.json()["id"]

    async with as_browser(stack_settings, alice["browser_token"]) as attacker:
        others = await attacker.get(f"/v1/sessions/{bob['id']}/saves", params=query)
        assert others.status_code == 404, others.text
        own_with_theirs = await attacker.get(f"/v1/sessions/{alice['id']}/saves", params=query)
        assert own_with_theirs.status_code == 404, own_with_theirs.text
        by_id = await attacker.get(f"/v1/saves/{saved.json()['id']}")
        assert by_id.status_code == 404, by_id.text
        # Nor can it make a save in the other's session.
        forged = await attacker.post(
            f"/v1/sessions/{bob['id']}/saves", json={"last_modified": STAMP}
        )
        assert forged.status_code == 404, forged.text

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {other_api_key}"},
        timeout=60,
    ) as other_tenant:
        foreign = await other_tenant.get(f"/v1/sessions/{bob['id']}/saves", params=query)
        assert foreign.status_code == 404, foreign.text
