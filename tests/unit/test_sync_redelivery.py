"""A new notebook's placement survives the store failing half-way (services/sync/handlers.py).

Sync writes a new notebook's file on the server and its first revision in the
store side by side. When the store fails, the file is there and the revision
is not; the redelivered server.ready must still end in session.ready with a
stored first revision, not in a dead letter. The real-stack counterpart is
tests/faults/test_store_down.py (FerretDB stopped under load).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError
from pymongo.errors import AutoReconnect

from schemas import CloudEvent, NotebookStored, ServerReady, SessionReady, hub_username
from services.sync.handlers import SyncHandlers
from services.sync.store import content_sha256


class Server:
    """A user's server: files written by path."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}

    async def list_folder(self, server_path: str, folder: str) -> set[str]:
        return {path.rsplit("/", 1)[-1] for path in self.files}

    async def put_notebook(self, server_path: str, path: str, content: dict[str, Any]) -> None:
        self.files[path] = content


class Store:
    """The sync store's placement calls, in memory; the first revision write fails once."""

    def __init__(self) -> None:
        self.notebooks: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, list[dict[str, Any]]] = {}
        self.placements: dict[str, tuple[str, str]] = {}
        self.revision_writes_to_fail = 1

    async def placement(self, session_id: str) -> dict[str, Any] | None:
        found = self.placements.get(session_id)
        return None if found is None else {"notebook_id": found[0], "path": found[1]}

    async def get_notebook(self, tenant_id: str, notebook_id: str) -> dict[str, Any] | None:
        return self.notebooks.get(notebook_id)

    async def place(self, hub_user: str, notebook: dict[str, Any], choose: Any) -> str:
        return str(choose(set()))

    async def claim_new_notebook(self, notebook: dict[str, Any]) -> dict[str, Any]:
        return self.notebooks.setdefault(notebook["_id"], {**notebook, "latest_revision": 0})

    async def latest_revision(self, notebook_id: str) -> dict[str, Any] | None:
        found = self.revisions.get(notebook_id)
        return found[-1] if found else None

    async def add_revision(
        self, notebook: dict[str, Any], content: dict[str, Any]
    ) -> tuple[int, str, bool]:
        if self.revision_writes_to_fail:
            self.revision_writes_to_fail -= 1
            raise AutoReconnect("127.0.0.1:27017: connection closed")
        stored = self.revisions.setdefault(notebook["_id"], [])
        digest = content_sha256(content)
        stored.append({"revision": len(stored) + 1, "sha256": digest, "content": content})
        return len(stored), digest, True

    async def record_placement(self, session_id: str, notebook_id: str, path: str) -> None:
        self.placements[session_id] = (notebook_id, path)


class NoInputs:
    async def place(self, server_path: str, tenant_id: str, inputs: list[Any]) -> None:
        return None


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, value: bytes, *, topic: str, headers: dict[str, str], **_: Any) -> None:
        self.events.append((headers["ce_type"], json.loads(value)))


def _handlers(server: Server, store: Store, broker: Published) -> SyncHandlers:
    return SyncHandlers(
        server,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        NoInputs(),  # type: ignore[arg-type]
        public_hub_url="http://hub",
        work_folder="work",
        ui="notebook",
        max_notebook_bytes=1 << 20,
        prestart_kernel=False,
    )


def _server_ready() -> CloudEvent[ServerReady]:
    hub_user = hub_username("demo", "u")
    return CloudEvent.wrap(
        ServerReady(
            session_id="s1",
            tenant_id="demo",
            hub_user=hub_user,
            server_path=f"/user/{hub_user}/",
            host_user_id="u",
            notebook_name="Analysis",
        ),
        source="/test",
    )


async def test_a_redelivery_after_the_store_failed_mid_placement_stores_revision_one() -> None:
    server, store, broker = Server(), Store(), Published()
    handlers, ready = _handlers(server, store, broker), _server_ready()

    with pytest.raises(AutoReconnect):  # the consumer retries this delivery
        await handlers.on_server_ready(ready)
    assert list(server.files) and not store.revisions  # the half-done state

    await handlers.on_server_ready(ready)

    [(path, content)] = server.files.items()
    [(notebook_id, [first])] = store.revisions.items()
    assert first["revision"] == 1 and first["content"] == content
    types = [event_type for event_type, _ in broker.events]
    assert types == [SessionReady.event_type, NotebookStored.event_type]
    session_ready, stored = (data for _, data in broker.events)
    assert session_ready["path"] == path and session_ready["notebook_id"] == notebook_id
    assert stored["revision"] == 1 and stored["content_sha256"] == first["sha256"]


class KafkaRefusesOnce(Published):
    """Kafka does not take the first notebook.stored (a batch expired in an outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    async def publish(self, value: bytes, *, topic: str, headers: dict[str, str], **_: Any) -> None:
        if headers["ce_type"] == NotebookStored.event_type and self.refusals:
            self.refusals -= 1
            raise NotLeaderForPartitionError()
        await super().publish(value, topic=topic, headers=headers)


async def test_a_new_notebook_whose_announcement_kafka_refused_is_announced_on_redelivery() -> None:
    server, store, broker = Server(), Store(), KafkaRefusesOnce()
    store.revision_writes_to_fail = 0
    handlers, ready = _handlers(server, store, broker), _server_ready()

    with pytest.raises(NotLeaderForPartitionError):  # the consumer retries this delivery
        await handlers.on_server_ready(ready)
    await handlers.on_server_ready(ready)

    # The library learns of the notebook (twice ready is harmless: the gateway's
    # projection is idempotent); one file, one revision.
    types = [event_type for event_type, _ in broker.events]
    assert types == [SessionReady.event_type, SessionReady.event_type, NotebookStored.event_type]
    assert len(server.files) == 1
    [[first]] = store.revisions.values()
    assert broker.events[-1][1]["revision"] == first["revision"] == 1
    assert store.placements  # recorded once everything was published
