"""Warm-ups: POST /v1/users/{user_id}/warm starts the user's server before any session, and
the session asked for afterwards is handed that very server (the warm path)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import eventually, open_session


async def ready_server(hub: httpx.AsyncClient, hub_user: str) -> dict[str, Any] | None:
    """The user's default server as the hub reports it, when ready."""
    answer = await hub.get(f"/users/{hub_user}")
    if answer.status_code != 200:
        return None
    server: dict[str, Any] | None = answer.json()["servers"].get("")
    return server if server and server.get("ready") else None


async def test_a_session_after_a_warm_up_gets_the_server_already_running(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"org/warm {uuid.uuid4().hex[:8]}"  # host ids are any string, slashes too
    hub_user = hub_username(stack_settings.tenants[0], user)
    warmed = await gateway.post(f"/v1/users/{quote(user, safe='')}/warm")
    assert warmed.status_code == 202, warmed.text
    assert warmed.json()["user_id"] == user
    assert warmed.json()["profile"]["name"] == "python"

    async def running() -> bool:
        return await ready_server(hub, hub_user) is not None

    await eventually(running, timeout=120)
    before = await ready_server(hub, hub_user)
    assert before is not None
    # Idempotent: asked again, the running server is left as it is.
    again = await gateway.post(f"/v1/users/{quote(user, safe='')}/warm", json={"profile": "python"})
    assert again.status_code == 202, again.text

    session = await open_session(gateway, user_id=user, notebook_name="warm")
    try:
        assert session["status"] == "ready", session
        after = await ready_server(hub, hub_user)
        assert after is not None
        # The very server the warm-up started: same spawn, same start time.
        assert after["user_options"]["instance"] == before["user_options"]["instance"]
        assert after["started"] == before["started"]
    finally:
        await gateway.delete(f"/v1/sessions/{session['id']}")


async def test_a_warm_up_starts_the_named_profile(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"warm-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    warmed = await gateway.post(f"/v1/users/{user}/warm", json={"profile": "data"})
    assert warmed.status_code == 202, warmed.text

    async def running() -> bool:
        return await ready_server(hub, hub_user) is not None

    await eventually(running, timeout=120)
    server = await ready_server(hub, hub_user)
    assert server is not None
    assert server["user_options"]["profile"] == "data"
    assert server["user_options"]["kernel"] == "nbembed-data"
    # Nothing opened a session: the user's server goes (and the hub user with it).
    await hub.delete(f"/users/{hub_user}/server")


async def test_a_warm_up_needs_the_tenants_key(stack_settings: StackSettings) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack_settings.gateway_port}") as h:
        refused = await h.post("/v1/users/someone/warm")
    assert refused.status_code == 401
