"""Sync gives up on a hung server in bounded time, and waits out a hung store
(services/sync/handlers.py).

The real-stack counterparts, with a frozen single-user server and a neighbour
on its partition, and with the store frozen under load, are
tests/faults/test_hub.py and tests/faults/test_store_down.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

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

    async def answers(self) -> bool:
        return True


class HungStore(EmptyStore):
    """A store that accepts the call and never answers (its ping neither)."""

    async def placement(self, session_id: str) -> None:
        await asyncio.Event().wait()

    async def answers(self) -> bool:
        return False


class Published:
    """Stands in for the broker: keeps what would be published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, *, topic: str, **_: Any) -> None:
        self.events.append((topic, value))


def _handlers(store: EmptyStore, broker: Published) -> SyncHandlers:
    return SyncHandlers(
        HungServer(),  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        public_hub_url="http://hub",
        work_folder="work",
        ui="notebook",
        max_notebook_bytes=1 << 20,
        placement_seconds=0.2,
    )


def _server_ready() -> CloudEvent[ServerReady]:
    hub_user = hub_username("demo", "u")
    ready = ServerReady(
        session_id="s1",
        tenant_id="demo",
        hub_user=hub_user,
        server_path=f"/user/{hub_user}/",
        host_user_id="u",
    )
    return CloudEvent.wrap(ready, source="/test")


async def test_a_hung_server_fails_the_session_as_server_unavailable_within_the_bound() -> None:
    broker = Published()
    async with asyncio.timeout(5):  # without the bound the handler never returns
        await _handlers(EmptyStore(), broker).on_server_ready(_server_ready())

    [(topic, value)] = broker.events
    assert topic == SessionFailed.topic
    failed = SessionFailed.model_validate_json(value)
    assert failed.session_id == "s1"
    assert failed.code == "server_unavailable"
    assert "did not answer" in failed.reason


async def test_a_placement_held_up_by_a_hung_store_is_an_outage_not_the_servers_fault() -> None:
    broker = Published()
    with pytest.raises(AutoReconnect):  # the consumer waits the outage out, then retries
        async with asyncio.timeout(5):
            await _handlers(HungStore(), broker).on_server_ready(_server_ready())
    assert broker.events == []  # the session is not failed
