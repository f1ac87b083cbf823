"""The provisioner's MongoDB collection: which sessions each hub user has open."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError


class OpenSessions:
    """Open sessions per hub user, so a server stops only when its last session ends.

    One document per session (has it ended?) and one per user (its open
    sessions), both reached by ``_id`` only: FerretDB's SQLite backend scans a
    collection for any other filter.
    """

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._sessions = client[database]["provisioner_sessions"]
        self._users = client[database]["provisioner_users"]

    async def opened(self, session_id: str, hub_user: str) -> None:
        """Record a requested session; a redelivery after its end does not reopen it."""
        try:
            await self._sessions.insert_one(
                {"_id": session_id, "hub_user": hub_user, "at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            return  # seen before: counted already, or ended
        await self._users.update_one(
            {"_id": hub_user}, {"$addToSet": {"open": session_id}}, upsert=True
        )

    async def ended(self, session_id: str, hub_user: str) -> int:
        """Record a session's end; return how many sessions the user still has open."""
        await self._sessions.update_one(
            {"_id": session_id},
            {"$set": {"hub_user": hub_user, "ended_at": datetime.now(UTC)}},
            upsert=True,
        )
        user = await self._users.find_one_and_update(
            {"_id": hub_user},
            {"$pull": {"open": session_id}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return len(user.get("open", [])) if user else 0
