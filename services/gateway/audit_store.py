"""The audit trail in the gateway's own database: records, and whom each hub user is.

Records are written only from the ``nbembed.audit`` topic (see `audit.AuditProjector`),
keyed by the event's id, so a redelivered event writes nothing twice. They are
read in time order, a page at a time, with a keyset cursor (time, id): pages stay
correct while records keep arriving, and no page costs a skip over earlier ones.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from schemas import AuditRecorded, CloudEvent
from services.common.mongo import upsert

Document = dict[str, Any]

_CURSOR_TEXT = re.compile(r"^(\d{1,15}):([A-Za-z0-9-]{1,128})$")


class BadCursor(ValueError):
    """A cursor this API did not hand out."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a page of the trail ends: the last record's time (ms precision) and id."""

    time: datetime
    record_id: str

    def encode(self) -> str:
        """The opaque cursor a client sends back for the next page."""
        millis = int(self.time.timestamp() * 1000)
        return base64.urlsafe_b64encode(f"{millis}:{self.record_id}".encode()).decode()

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """The position a cursor stands for; `BadCursor` for anything else."""
        try:
            text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        except (ValueError, binascii.Error) as exc:  # bad base64, padding or bytes
            raise BadCursor(cursor) from exc
        match = _CURSOR_TEXT.match(text)
        if match is None:
            raise BadCursor(cursor)
        try:
            time = datetime.fromtimestamp(int(match[1]) / 1000, UTC)
        except (OverflowError, OSError, ValueError) as exc:  # beyond the calendar
            raise BadCursor(cursor) from exc
        return cls(time, match[2])

    @classmethod
    def of(cls, doc: Document) -> Position:
        """The position of a stored record."""
        return cls(doc["time"], doc["_id"])


class AuditStore:
    """The ``audit`` collection: one document per audit event, by tenant, user and time."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._records = client[database]["audit"]

    async def ensure_indexes(self) -> None:
        """Indexes for the two reads: a tenant's trail, and one user's (both in time order)."""
        await self._records.create_index(
            [("tenant_id", ASCENDING), ("hub_user", ASCENDING), ("time", ASCENDING)],
            name="tenant_user_time",
        )
        await self._records.create_index(
            [("tenant_id", ASCENDING), ("time", ASCENDING)], name="tenant_time"
        )

    async def record(self, event: CloudEvent[AuditRecorded]) -> bool:
        """Store one audit event; False when its id is already stored (a redelivery)."""
        data = event.data
        try:
            await self._records.insert_one(
                {
                    "_id": event.id,
                    "time": event.time,
                    "recorded_at": datetime.now(UTC),
                    **data.model_dump(),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def page(
        self,
        tenant_id: str,
        *,
        hub_user: str | None,
        since: datetime | None,
        after: Position | None,
        limit: int,
    ) -> list[Document]:
        """Up to ``limit`` of the tenant's records in time order, after ``after``."""
        query: Document = {"tenant_id": tenant_id}
        if hub_user is not None:
            query["hub_user"] = hub_user
        if since is not None:
            query["time"] = {"$gte": since}
        if after is not None:
            query["$or"] = [
                {"time": {"$gt": after.time}},
                {"time": after.time, "_id": {"$gt": after.record_id}},
            ]
        cursor = self._records.find(query).sort([("time", 1), ("_id", 1)]).limit(limit)
        return [doc async for doc in cursor]


class AuditUsers:
    """Which tenant and host user each hub user is, written when a session is requested.

    Hub user names are one-way digests of the host's user id (`schemas.hub_username`),
    so facts that name only the hub user (a server's report, a session's end)
    are attributed through this map, which only the gateway writes. An entry
    never changes once written, so each process remembers the ones it has seen
    (up to ``cache_size``): opening a session for a known user costs no write.
    """

    def __init__(
        self, client: AsyncMongoClient[Document], database: str, *, cache_size: int = 100_000
    ) -> None:
        self._users = client[database]["audit_users"]
        self._known: dict[str, Document] = {}
        self._cache_size = cache_size

    async def remember(self, hub_user: str, tenant_id: str, user_id: str) -> None:
        """Record (once) whose hub user this is."""
        if hub_user in self._known:
            return
        known = {"$setOnInsert": {"tenant_id": tenant_id, "user_id": user_id}}
        await upsert(lambda: self._users.update_one({"_id": hub_user}, known, upsert=True))
        # The name is a digest of exactly this tenant and user: what is stored is this.
        self._cache(hub_user, {"_id": hub_user, "tenant_id": tenant_id, "user_id": user_id})

    async def get(self, hub_user: str) -> Document | None:
        """``{"tenant_id", "user_id"}`` of a hub user nbembed made, or None."""
        known = self._known.get(hub_user)
        if known is not None:
            return known
        found = await self._users.find_one({"_id": hub_user})
        if found is not None:
            self._cache(hub_user, found)
        return found

    def _cache(self, hub_user: str, entry: Document) -> None:
        if len(self._known) >= self._cache_size:
            self._known.clear()
        self._known[hub_user] = entry
