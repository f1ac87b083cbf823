"""The gateway's own MongoDB collections: sessions, saves and the notebooks it knows.

Each status only moves forward (events may arrive late or twice), every lookup
is scoped by tenant (another tenant's object simply does not exist), and
long-polls are woken by this process's projection the moment it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]

SessionStatus = Literal["requested", "provisioning", "ready", "failed", "ended"]
SESSION_RANK: dict[str, int] = {
    "requested": 0,
    "provisioning": 1,
    "ready": 2,
    "failed": 2,
    "ended": 3,
}
SESSION_FINAL = {"ready", "failed", "ended"}

SaveStatus = Literal["pending", "stored", "failed"]
SAVE_RANK: dict[str, int] = {"pending": 0, "stored": 1, "failed": 1}


class ChangeNotifier:
    """Wakes long-polls waiting on one key when the projection changes it."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    def notify(self, key: str) -> None:
        """Wake everyone waiting on ``key``."""
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def wait(self, key: str, timeout: float) -> None:
        """Return when ``key`` changes or after ``timeout`` seconds."""
        event = self._events.setdefault(key, asyncio.Event())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                if self._events.get(key) is event:
                    del self._events[key]


class _ForwardOnly:
    """A collection whose documents have a status that only moves forward."""

    def __init__(self, collection: AsyncCollection[Document], ranks: dict[str, int]) -> None:
        self._docs = collection
        self._ranks = ranks
        self.changes = ChangeNotifier()

    async def get(self, tenant_id: str, doc_id: str) -> Document | None:
        """The tenant's document, or None (also when it belongs to another tenant)."""
        return await self._docs.find_one({"_id": doc_id, "tenant_id": tenant_id})

    async def advance(self, doc_id: str, status: str, **fields: Any) -> Document | None:
        """Move to ``status`` and set ``fields``, never backwards.

        Returns the updated document, or None when it already was at or past
        that status (a redelivered or late event), which keeps projection
        idempotent.
        """
        rank = self._ranks[status]
        updated = await self._docs.find_one_and_update(
            {"_id": doc_id, "status_rank": {"$lt": rank}},
            {
                "$set": {
                    "status": status,
                    "status_rank": rank,
                    "updated_at": datetime.now(UTC),
                    **fields,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            self.changes.notify(doc_id)
        return updated

    async def wait_for_change(
        self, tenant_id: str, doc_id: str, known_status: str, timeout: float
    ) -> Document | None:
        """Long-poll: the document once its status differs from ``known_status``.

        Woken at once by this process's projection; read again at the timeout in
        case another gateway replica made the change.
        """
        current = await self.get(tenant_id, doc_id)
        if current is None or current["status"] != known_status or timeout <= 0:
            return current
        await self.changes.wait(doc_id, timeout)
        return await self.get(tenant_id, doc_id)

    async def _insert(self, doc: Document, status: str) -> None:
        now = datetime.now(UTC)
        await self._docs.insert_one(
            {**doc, "status": status, "status_rank": 0, "created_at": now, "updated_at": now}
        )


class SessionStore(_ForwardOnly):
    """Sessions as host apps see them."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        super().__init__(client[database]["sessions"], SESSION_RANK)
        self._client = client

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries rely on (idempotent)."""
        # Unique even without an Idempotency-Key: then the key is the session id
        # (FerretDB has no partial indexes, so nulls must not share the index).
        await self._docs.create_index([("idempotency_key", ASCENDING)], unique=True)
        await self._docs.create_index([("tenant_id", ASCENDING), ("hub_user", ASCENDING)])

    async def ping(self) -> bool:
        """MongoDB answers."""
        try:
            await self._client.admin.command("ping")
            return True
        except Exception:
            return False

    async def create(self, session: Document, idempotency_key: str | None) -> tuple[Document, bool]:
        """Insert a new session; with a key already used, return that session instead.

        Returns (session, created).
        """
        key = f"{session['tenant_id']}:{idempotency_key or 'session:' + session['_id']}"
        try:
            await self._insert({**session, "idempotency_key": key}, "requested")
        except DuplicateKeyError:
            existing = await self._docs.find_one({"idempotency_key": key})
            if existing is not None:
                return existing, False
            raise
        created = await self._docs.find_one({"_id": session["_id"]})
        assert created is not None
        return created, True


class SaveStore(_ForwardOnly):
    """Saves requested through the gateway and what became of them."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        super().__init__(client[database]["saves"], SAVE_RANK)

    async def ensure_indexes(self) -> None:
        """Index saves by notebook."""
        await self._docs.create_index([("tenant_id", ASCENDING), ("notebook_id", ASCENDING)])

    async def create(self, save: Document) -> Document:
        """Record a new pending save."""
        await self._insert(save, "pending")
        created = await self._docs.find_one({"_id": save["_id"]})
        assert created is not None
        return created

    async def record_unrequested(self, save: Document, status: str, **fields: Any) -> None:
        """Record the outcome of a save the gateway did not request (Jupyter's own)."""
        now = datetime.now(UTC)
        await self._docs.update_one(
            {"_id": save["_id"]},
            {
                "$setOnInsert": {**save, "created_at": now},
                "$set": {
                    "status": status,
                    "status_rank": self._ranks[status],
                    "updated_at": now,
                    **fields,
                },
            },
            upsert=True,
        )


class NotebookView:
    """The notebooks each tenant has, as announced by sync's notebook.stored events."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._notebooks = client[database]["gateway_notebooks"]

    async def ensure_indexes(self) -> None:
        """Index listing by tenant and recency."""
        await self._notebooks.create_index([("tenant_id", ASCENDING), ("updated_at", DESCENDING)])

    async def record(self, notebook: Document, revision: int) -> None:
        """Remember a notebook at ``revision`` (or later; never goes back)."""
        await self._notebooks.update_one(
            {"_id": f"{notebook['tenant_id']}/{notebook['notebook_id']}"},
            {
                "$setOnInsert": {"created_at": datetime.now(UTC)},
                "$set": {**notebook, "updated_at": datetime.now(UTC)},
                "$max": {"latest_revision": revision},
            },
            upsert=True,
        )

    async def get(self, tenant_id: str, notebook_id: str) -> Document | None:
        """The tenant's notebook, or None."""
        return await self._notebooks.find_one({"_id": f"{tenant_id}/{notebook_id}"})
