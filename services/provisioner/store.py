"""The provisioner's MongoDB collection: which sessions each hub user has open."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient


class OpenSessions:
    """Open sessions per hub user, so a server stops only when its last session ends."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._sessions = client[database]["provisioner_sessions"]

    async def ensure_indexes(self) -> None:
        """Index the per-user count."""
        await self._sessions.create_index([("hub_user", ASCENDING), ("open", ASCENDING)])

    async def opened(self, session_id: str, hub_user: str) -> None:
        """Record a requested session (a redelivery after its end does not reopen it)."""
        await self._sessions.update_one(
            {"_id": session_id},
            {"$setOnInsert": {"hub_user": hub_user, "open": True, "at": datetime.now(UTC)}},
            upsert=True,
        )

    async def ended(self, session_id: str, hub_user: str) -> int:
        """Record a session's end; return how many sessions the user still has open."""
        await self._sessions.update_one(
            {"_id": session_id},
            {"$set": {"hub_user": hub_user, "open": False, "ended_at": datetime.now(UTC)}},
            upsert=True,
        )
        return await self._sessions.count_documents({"hub_user": hub_user, "open": True})
