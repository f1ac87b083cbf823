"""Small helpers for the real-stack tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from infra import stack
from infra.settings import StackSettings

# In the command line of every single-user server the hub starts (c.Spawner.cmd).
SERVER_MODULE = "nbembed_singleuser"

IN_A_FRAME = {
    "Sec-Fetch-Dest": "iframe",
    "Sec-Fetch-Site": "same-site",
    "Sec-Fetch-Mode": "navigate",
}
"""The Fetch Metadata a browser sends when a host page's iframe opens a URL of the hub.

The hub's ticket login answers only such navigations (login CSRF, see
infra/hub/ticket_login.py), so HTTP clients standing in for a browser send them.
"""


async def wait_for_final_status(
    gateway: httpx.AsyncClient, session_id: str, timeout: float = 120
) -> dict[str, Any]:
    """Long-poll the gateway until the session is ready, failed or ended."""
    async with asyncio.timeout(timeout):
        status = "requested"
        while True:
            response = await gateway.get(
                f"/v1/sessions/{session_id}", params={"wait": 25, "status": status}
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in ("ready", "failed", "ended"):
                return body
            status = body["status"]


async def open_session(
    gateway: httpx.AsyncClient, *, timeout: float = 120, **body: Any
) -> dict[str, Any]:
    """POST a session and wait (up to ``timeout`` seconds) until it is final."""
    created = await gateway.post("/v1/sessions", json=body)
    assert created.status_code == 202, created.text
    return await wait_for_final_status(gateway, created.json()["id"], timeout=timeout)


async def start_server_and_wait(hub: httpx.AsyncClient, name: str, timeout: float = 90) -> None:
    """Start ``name``'s server through the hub API and follow its progress stream to ready."""
    started = await hub.post(f"/users/{name}/server")
    assert started.status_code in (201, 202), started.text
    if started.status_code == 201:
        return
    async with (
        asyncio.timeout(timeout),
        hub.stream("GET", f"/users/{name}/server/progress") as progress,
    ):
        async for line in progress.aiter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("ready"):
                return
    raise AssertionError(f"server of {name} never became ready")


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout: float = 30, interval: float = 0.2
) -> None:
    """Wait until ``condition`` holds, for state no event tells us about (Kafka offsets, hub)."""
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - polling an outside system
            await asyncio.sleep(interval)


def every_gateway(settings: StackSettings) -> list[str]:
    """Each gateway replica's own base URL (the shared port picks one replica per connection).

    Tenant changes reach each replica at its own next reload, so a test that
    waits for one must see it on all of them before it relies on it.
    """
    index = stack.SERVICES.index("gateway")
    return [
        f"http://127.0.0.1:{settings.replica_port(index, replica)}"
        for replica in range(1, settings.replicas + 1)
    ]


async def statuses_with_key(settings: StackSettings, key: str) -> set[int]:
    """The status each gateway replica answers a tenant's call with ``key``."""
    answers: set[int] = set()
    for base in every_gateway(settings):
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            answers.add((await http.get("/v1/notebooks", params={"user_id": "nobody"})).status_code)
    return answers
