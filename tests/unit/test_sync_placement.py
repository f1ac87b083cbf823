"""Sync gives up on a hung server in bounded time (services/sync/handlers.py).

The real-stack counterpart, with a frozen single-user server and a neighbour on
its partition, is tests/faults/test_hub.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from schemas import CloudEvent, ServerReady, SessionFailed, hub_username
from services.sync.handlers import SyncHandlers


class HungServer:
    """A contents client whose server accepts the request and never answers."""

    async def list_folder(self, server_path: str, folder: str) -> set[str]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class EmptyStore:
    async def placement(self, session_id: str) -> None:
        return None

    async def get_notebook(self, tenant_id: str, notebook_id: str) -> None:
        return None


class Published:
    """Stands in for the broker: keeps what would be published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, *, topic: str, **_: Any) -> None:
        self.events.append((topic, value))


async def test_a_hung_server_fails_the_session_as_server_unavailable_within_the_bound() -> None:
    broker = Published()
    handlers = SyncHandlers(
        HungServer(),  # type: ignore[arg-type]
        EmptyStore(),  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        public_hub_url="http://hub",
        work_folder="work",
        ui="notebook",
        max_notebook_bytes=1 << 20,
        placement_seconds=0.2,
    )
    hub_user = hub_username("demo", "u")
    ready = ServerReady(
        session_id="s1",
        tenant_id="demo",
        hub_user=hub_user,
        server_path=f"/user/{hub_user}/",
        host_user_id="u",
    )
    async with asyncio.timeout(5):  # without the bound the handler never returns
        await handlers.on_server_ready(CloudEvent.wrap(ready, source="/test"))

    [(topic, value)] = broker.events
    assert topic == SessionFailed.topic
    failed = SessionFailed.model_validate_json(value)
    assert failed.session_id == "s1"
    assert failed.code == "server_unavailable"
    assert "did not answer" in failed.reason
