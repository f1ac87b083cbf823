"""The gateway's own MongoDB collections: sessions as host apps see them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

SessionStatus = Literal["requested", "provisioning", "ready", "failed", "ended"]

# Events can arrive late or twice; a status only ever moves forward.
STATUS_RANK: dict[str, int] = {
    "requested": 0,
    "provisioning": 1,
    "ready": 2,
    "failed": 2,
    "ended": 3,
}
TERMINAL = {"ready", "failed", "ended"}

Document = dict[str, Any]


class SessionStore:
    """Session documents, keyed by session id and scoped by tenant.

    Every lookup takes the tenant id, so one tenant can never read or change
    another's session: for it the session simply does not exist.
    """

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._client = client
        self._sessions = client[database]["sessions"]
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries rely on (idempotent)."""
        # Unique even without an Idempotency-Key: then the key is the session id
        # (FerretDB has no partial indexes, so nulls must not share the index).
        await self._sessions.create_index([("idempotency_key", ASCENDING)], unique=True)
        await self._sessions.create_index([("tenant_id", ASCENDING), ("hub_user", ASCENDING)])

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
        now = datetime.now(UTC)
        key = f"{session['tenant_id']}:{idempotency_key or 'session:' + session['_id']}"
        doc = {
            **session,
            "idempotency_key": key,
            "status": "requested",
            "status_rank": 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._sessions.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            existing = await self._sessions.find_one({"idempotency_key": key})
            if existing is None:  # deleted in between: extremely unlikely, retry once
                await self._sessions.insert_one(doc)
                return doc, True
            return existing, False

    async def get(self, tenant_id: str, session_id: str) -> Document | None:
        """The tenant's session, or None (also when it belongs to another tenant)."""
        return await self._sessions.find_one({"_id": session_id, "tenant_id": tenant_id})

    async def advance(
        self, session_id: str, status: SessionStatus, **fields: Any
    ) -> Document | None:
        """Move a session forward to ``status`` and set ``fields``; never backwards.

        Returns the updated session, or None when it already was at or past that
        status (a redelivered or late event), so projection is idempotent.
        """
        rank = STATUS_RANK[status]
        updated = await self._sessions.find_one_and_update(
            {"_id": session_id, "status_rank": {"$lt": rank}},
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
            self._notify(session_id)
        return updated

    def _notify(self, session_id: str) -> None:
        event = self._changed.pop(session_id, None)
        if event is not None:
            event.set()

    async def wait_for_change(
        self, tenant_id: str, session_id: str, status: str, timeout: float
    ) -> Document | None:
        """Long-poll: the session once its status differs from ``status``, or at the timeout.

        Woken at once by this process's projection; the store is read again at
        the end in case another gateway replica made the change.
        """
        event = self._changed[session_id]
        current = await self.get(tenant_id, session_id)
        if current is None or current["status"] != status or timeout <= 0:
            return current
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return await self.get(tenant_id, session_id)
