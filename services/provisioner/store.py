"""The provisioner's MongoDB collection: which sessions each hub user has open."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common.mongo import upsert


class OpenSessions:
    """Open sessions per hub user, so a server stops only when its last session ends.

    One document per session (has it ended?) and one per user (its open
    sessions), both reached by ``_id`` only: FerretDB's SQLite backend scans a
    collection for any other filter.
    """

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._sessions = client[database]["provisioner_sessions"]
        self._users = client[database]["provisioner_users"]

    async def opened(
        self, session_id: str, hub_user: str, *, restricted: bool = False
    ) -> bool | None:
        """Record a requested session; a redelivery after its end does not reopen it.

        Returns whether the user's server must run restricted: this session is,
        or another open session of the user is (the server is always as strict
        as the strictest open session); None when the session has ended already
        (a request republished after its end: nothing to start).
        """
        try:
            await self._sessions.insert_one(
                {
                    "_id": session_id,
                    "hub_user": hub_user,
                    "restricted": restricted,
                    "at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            # Seen before: counted already, or ended.
            seen = await self._sessions.find_one({"_id": session_id})
            if seen is not None and "ended_at" in seen:
                return None
            user = await self._users.find_one({"_id": hub_user})
        else:
            added: dict[str, str] = {"open": session_id}
            if restricted:
                added["restricted_open"] = session_id
            user = await upsert(
                lambda: self._users.find_one_and_update(
                    {"_id": hub_user},
                    {"$addToSet": added},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            )
        return restricted or bool(user and user.get("restricted_open"))

    async def ended(self, session_id: str, hub_user: str) -> int:
        """Record a session's end; return how many sessions the user still has open."""
        ended = {"$set": {"hub_user": hub_user, "ended_at": datetime.now(UTC)}}
        await upsert(lambda: self._sessions.update_one({"_id": session_id}, ended, upsert=True))
        user = await upsert(
            lambda: self._users.find_one_and_update(
                {"_id": hub_user},
                {"$pull": {"open": session_id, "restricted_open": session_id}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        )
        return len(user.get("open", [])) if user else 0

    async def on_server(self, hub_user: str, instance: str | None) -> None:
        """The user's open sessions now live on server ``instance`` (the one just handed out).

        One server per user: when the provisioner restarts it (stricter mode),
        the user's other sessions' pages reconnect to the new one, so they all
        move with it.
        """
        await self._users.update_one({"_id": hub_user}, {"$set": {"instance": instance}})

    async def user(self, hub_user: str) -> dict[str, Any] | None:
        """The user's record: ``open`` sessions, ``instance`` of their server."""
        return await self._users.find_one({"_id": hub_user})

    async def server_gone(self, hub_user: str) -> None:
        """The user's server stopped: no session lives on any server until the next start."""
        await self._users.update_one({"_id": hub_user}, {"$set": {"instance": None}})

    async def users_on_servers(self) -> list[dict[str, Any]]:
        """Users with open sessions on a server nbembed handed out (a scan: periodic only)."""
        cursor = self._users.find({"instance": {"$ne": None}})
        return [user async for user in cursor if user.get("open") and user.get("instance")]
