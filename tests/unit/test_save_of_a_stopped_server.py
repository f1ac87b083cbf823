"""A save whose server stopped before sync read it fails at once, clearly
(services/sync/handlers.py, ``SERVER_GONE_STATUSES``).

The hub answers an API request for a server that no longer runs with 424.
Before, sync retried such a read five times and dead-lettered the save, which
then failed as ``internal``. A redirect (302: a running server whose proxy route
is briefly missing) is still retried. The real-stack
counterpart of a save ending ``server_unavailable`` is tests/stack/test_server_follow.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import CloudEvent, NotebookSaved, NotebookStoreFailed, hub_username
from services.sync.contents import ContentsError
from services.sync.handlers import SyncHandlers

HUB_USER = hub_username("demo", "u")
PATH = "work/a.ipynb"


class StoppedServer:
    def __init__(self, status: int) -> None:
        self.status = status

    async def read_file(self, server_path: str, path: str, **_: Any) -> bytes:
        raise ContentsError(f"reading {path}: {self.status}", self.status)


class Store:
    async def get_notebook(self, tenant_id: str, notebook_id: str) -> dict[str, Any]:
        return {"_id": notebook_id, "tenant_id": tenant_id}

    async def file_of(self, hub_user: str, notebook_id: str) -> str:
        return PATH


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, value: bytes, *, topic: str, headers: dict[str, str], **_: Any) -> None:
        self.events.append((headers["ce_type"], json.loads(value)))


def handlers_for(status: int, broker: Published) -> SyncHandlers:
    """Sync, with a server that answers every read with ``status``."""
    return SyncHandlers(
        StoppedServer(status),  # type: ignore[arg-type]
        Store(),  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        public_hub_url="http://hub",
        work_folder="work",
        ui="notebook",
        max_notebook_bytes=1 << 20,
    )


def server_save() -> CloudEvent[NotebookSaved]:
    saved = NotebookSaved(
        save_id="sv1",
        tenant_id="demo",
        notebook_id="n1",
        hub_user=HUB_USER,
        path=PATH,
        origin="server",
    )
    return CloudEvent.wrap(saved, source="/test")


async def test_a_save_read_from_a_stopped_server_fails_as_server_unavailable() -> None:
    broker = Published()
    await handlers_for(424, broker).on_notebook_saved(server_save())
    [(event_type, failed)] = broker.events
    assert event_type == NotebookStoreFailed.event_type
    assert (failed["save_id"], failed["code"]) == ("sv1", "server_unavailable")
    assert "424" in failed["reason"]


@pytest.mark.parametrize("status", [302, 500])
async def test_a_redirect_or_a_server_error_is_still_retried(status: int) -> None:
    broker = Published()
    with pytest.raises(ContentsError):  # the consumer retries, then dead-letters
        await handlers_for(status, broker).on_notebook_saved(server_save())
    assert broker.events == []
