"""The gateway's own MongoDB collections: sessions, saves and the notebooks it knows.

Each status only moves forward (events may arrive late or twice), every lookup
is scoped by tenant (another tenant's object simply does not exist), and
long-polls are woken the moment a status moves, in this replica and, through
the change feed (changes.py), in every other one.

Every read and write on the hot path filters on ``_id`` alone: FerretDB's
SQLite backend pushes only such filters down to SQLite and scans the whole
collection for anything else (measured: 1.9 ms by ``_id``, 15 ms with one more
condition on a few hundred sessions, growing with the collection). Conditions
are therefore checked in Python, and "only forward" is an atomic ``$max`` on
the status rank, which needs no condition at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client import Counter, Histogram
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.common.health import store_answers
from services.common.mongo import upsert
from services.gateway.outbox import Entries, as_fields

Document = dict[str, Any]

SessionStatus = Literal["requested", "provisioning", "ready", "failed", "ended"]
SESSION_STATUSES: tuple[SessionStatus, ...] = (
    "requested",
    "provisioning",
    "ready",
    "failed",
    "ended",
)  # in rank order: a status is its index
SESSION_FINAL = {"ready", "failed", "ended"}

SaveStatus = Literal["pending", "stored", "failed"]
SAVE_STATUSES: tuple[SaveStatus, ...] = ("pending", "stored", "failed")

# Observed where a status moves: the store's atomic update tells exactly one
# replica that it moved it, so summing over replicas counts each move once.
SESSION_TRANSITIONS = Counter(
    "nbembed_session_transitions",
    "Sessions that entered each status, by tenant (rate: sessions per status per second; "
    "requested minus ready, failed and ended: sessions under way).",
    ["tenant", "status"],
)
TIME_TO_NOTEBOOK = Histogram(
    "nbembed_time_to_notebook_seconds",
    "From a session's request (POST /v1/sessions) to its status ready, by tenant.",
    ["tenant"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 20, 30, 60, 120),
)
SAVE_TO_DURABLE = Histogram(
    "nbembed_save_to_durable_seconds",
    "From a save's request (the SDK's or the server's report) to its revision stored, by tenant.",
    ["tenant"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def _seconds_since(then: datetime) -> float:
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


class ChangeNotifier:
    """Wakes long-polls waiting on one key when the projection changes it.

    A waiter subscribes *before* reading the current state, so a change made
    between its read and its wait still wakes it.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}
        self.relay: Callable[[str], None] | None = None
        """Told of each change made here, to wake the other replicas (changes.py)."""

    def notify(self, key: str) -> None:
        """``key`` changed in the store: wake its waiters here and in the other replicas."""
        self.wake(key)
        if self.relay is not None:
            self.relay(key)

    def wake(self, key: str) -> None:
        """Wake everyone waiting on ``key`` in this replica."""
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        """An event set at the next change of ``key``, for the duration of the block."""
        event = self._events.setdefault(key, asyncio.Event())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            yield event
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                if self._events.get(key) is event:
                    del self._events[key]


class _ForwardOnly:
    """A collection whose documents have a status that only moves forward."""

    def __init__(self, collection: AsyncCollection[Document], statuses: tuple[str, ...]) -> None:
        self._docs = collection
        self._statuses = statuses
        self.changes = ChangeNotifier()

    async def get(self, tenant_id: str, doc_id: str) -> Document | None:
        """The tenant's document, or None (also when it belongs to another tenant)."""
        doc = await self._docs.find_one({"_id": doc_id})
        if doc is None or doc["tenant_id"] != tenant_id:
            return None
        doc["status"] = self._statuses[doc["status_rank"]]
        return doc

    async def get_any(self, doc_id: str) -> Document | None:
        """The document whoever its tenant is (callers check access themselves)."""
        doc = await self._docs.find_one({"_id": doc_id})
        if doc is not None:
            doc["status"] = self._statuses[doc["status_rank"]]
        return doc

    async def advance(self, doc_id: str, status: str, **fields: Any) -> bool:
        """Move to ``status`` unless already there or past it, and set ``fields``.

        Atomic and order-free (``$max`` on the rank), so late or redelivered
        events never move a status back. True when the status moved now.
        """
        rank = self._statuses.index(status)
        before = await self._docs.find_one_and_update(
            {"_id": doc_id},
            {"$max": {"status_rank": rank, "updated_at": datetime.now(UTC)}, "$set": fields}
            if fields
            else {"$max": {"status_rank": rank, "updated_at": datetime.now(UTC)}},
            return_document=ReturnDocument.BEFORE,
        )
        if before is None or before["status_rank"] >= rank:
            return False
        self.changes.notify(doc_id)
        self._moved(before, status)
        return True

    def _moved(self, before: Document, status: str) -> None:
        """``before`` has just moved to ``status``, by this replica: record it in metrics."""

    async def wait_for_change(
        self,
        tenant_id: str,
        doc_id: str,
        known_status: str,
        timeout: float,
        news: Callable[[], Awaitable[bool]] | None = None,
    ) -> Document | None:
        """Long-poll: the document once its status differs from ``known_status``
        (or, given ``news``, once it answers True: something else the caller follows).

        Woken at once when any gateway replica moves the status (changes.py);
        read again at the timeout in case a wake-up was lost.
        """
        with self.changes.subscribe(doc_id) as changed:
            current = await self.get(tenant_id, doc_id)
            if current is None or current["status"] != known_status or timeout <= 0:
                return current
            if news is not None and await news():
                return current
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        return await self.get(tenant_id, doc_id)

    async def _insert(self, doc: Document) -> Document:
        now = datetime.now(UTC)
        stored = {**doc, "status_rank": 0, "created_at": now, "updated_at": now}
        await self._docs.insert_one(stored)
        return {**stored, "status": self._statuses[0]}


class SessionStore(_ForwardOnly):
    """Sessions as host apps see them."""

    COLLECTION = "sessions"

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        super().__init__(client[database][self.COLLECTION], SESSION_STATUSES)
        self._client = client

    async def ping(self) -> bool:
        """MongoDB answers within the probe's time (a hung store too is "down")."""
        return await store_answers(self._client)

    async def open_on_notebook(self, tenant_id: str, notebook_id: str) -> list[Document]:
        """The tenant's sessions on a notebook that have not ended (a scan: rare calls)."""
        ended = SESSION_STATUSES.index("ended")
        cursor = self._docs.find({"tenant_id": tenant_id, "notebook_id": notebook_id})
        return [doc async for doc in cursor if doc["status_rank"] < ended]

    async def set_inputs(self, session_id: str, inputs: list[Document], outbox: Entries) -> None:
        """Replace the input files attached to a session, with the events that tell it."""
        await self._docs.update_one(
            {"_id": session_id}, {"$set": {"inputs": inputs, **as_fields(outbox)}}
        )

    async def end(
        self, session_id: str, reason: str, code: str, outbox: Entries
    ) -> Document | None:
        """End a session once, with its events; the session as it was, or None if ended before.

        The condition on the rank rides on the ``_id`` lookup (FerretDB fetches
        the one document and checks it), so ending twice adds no second event.
        """
        ended = SESSION_STATUSES.index("ended")
        before = await self._docs.find_one_and_update(
            {"_id": session_id, "status_rank": {"$lt": ended}},
            {
                "$set": {
                    "status_rank": ended,
                    "updated_at": datetime.now(UTC),
                    "end_reason": reason,
                    "end_code": code,
                    **as_fields(outbox),
                }
            },
            return_document=ReturnDocument.BEFORE,
        )
        if before is not None:
            self.changes.notify(session_id)
            self._moved(before, "ended")
        return before

    def _moved(self, before: Document, status: str) -> None:
        SESSION_TRANSITIONS.labels(before["tenant_id"], status).inc()
        if status == "ready":
            TIME_TO_NOTEBOOK.labels(before["tenant_id"]).observe(
                _seconds_since(before["created_at"])
            )

    async def open_of_user(self, hub_user: str) -> list[Document]:
        """The hub user's sessions that have not ended (a scan of one user's: few)."""
        ended = SESSION_STATUSES.index("ended")
        cursor = self._docs.find({"hub_user": hub_user})
        return [doc async for doc in cursor if doc["status_rank"] < ended]

    async def create(self, session: Document) -> tuple[Document, bool]:
        """Insert a new session, or return the one with the same id (an idempotent retry).

        Returns (session, created).
        """
        try:
            created = await self._insert(session)
        except DuplicateKeyError:
            existing = await self.get(session["tenant_id"], session["_id"])
            if existing is None:
                raise
            return existing, False
        SESSION_TRANSITIONS.labels(created["tenant_id"], created["status"]).inc()
        return created, True


class SaveStore(_ForwardOnly):
    """Saves requested through the gateway and what became of them."""

    COLLECTION = "saves"

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        super().__init__(client[database][self.COLLECTION], SAVE_STATUSES)

    async def create(self, save: Document, outbox: Entries) -> Document:
        """Record a new pending save with the event that asks for it."""
        return await self._insert({**save, "outbox": outbox})

    async def complete(self, save: Document, status: SaveStatus, **fields: Any) -> None:
        """Record a save's outcome; creates the record for saves Jupyter made itself."""
        now = datetime.now(UTC)
        update = {
            "$setOnInsert": {**save, "created_at": now},
            "$max": {"status_rank": self._statuses.index(status), "updated_at": now},
            "$set": fields,
        }
        before = await upsert(
            lambda: self._docs.find_one_and_update(
                {"_id": save["_id"]}, update, upsert=True, return_document=ReturnDocument.BEFORE
            )
        )
        if before is not None:
            self.changes.notify(save["_id"])
            if status == "stored" and before["status_rank"] == 0:
                SAVE_TO_DURABLE.labels(before["tenant_id"]).observe(
                    _seconds_since(before["created_at"])
                )


class NotebookView:
    """The notebooks each tenant has, as announced by sync's notebook.stored events.

    A deleted notebook leaves a tombstone, so a late notebook.stored (a save in
    flight during the delete) cannot bring it back.
    """

    COLLECTION = "gateway_notebooks"

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._notebooks = client[database][self.COLLECTION]

    @staticmethod
    def key(tenant_id: str, notebook_id: str) -> str:
        """The record's ``_id``."""
        return f"{tenant_id}/{notebook_id}"

    async def record(
        self, notebook: Document, revision: int, stored_at: datetime, *, changed: bool
    ) -> None:
        """Remember a notebook at ``revision`` (or later; never goes back).

        ``stored_at`` is when the revision became durable (its event's time), not
        when this replica projected it: with several gateway replicas, events of
        different notebooks are projected in any order, and the library's "most
        recently updated first" must not depend on which replica was quicker.
        A save that ``changed`` nothing does not date the notebook: the server's
        own report of sync placing a notebook would otherwise move it ahead of
        notebooks opened after it.
        """
        now = datetime.now(UTC)
        dated = {"updated_at": stored_at}
        update = {
            # Name and owner are the creator's; later renames are the gateway's own.
            "$setOnInsert": {
                "created_at": now,
                "name": notebook.pop("name"),
                "user_id": notebook.pop("user_id"),
                **({} if changed else dated),
            },
            "$set": notebook,
            "$max": {"latest_revision": revision, **(dated if changed else {})},
        }
        key = self.key(notebook["tenant_id"], notebook["notebook_id"])
        await upsert(lambda: self._notebooks.update_one({"_id": key}, update, upsert=True))

    async def get(self, tenant_id: str, notebook_id: str) -> Document | None:
        """The tenant's notebook, or None (also when deleted)."""
        found = await self._notebooks.find_one({"_id": self.key(tenant_id, notebook_id)})
        return None if found is None or found.get("deleted") else found

    async def list(
        self, tenant_id: str, hub_user: str | None, *, offset: int, limit: int
    ) -> list[Document]:
        """A page of the tenant's notebooks, most recently updated first.

        Not a hot path: FerretDB scans the collection for this filter.
        """
        query: Document = {"tenant_id": tenant_id, "deleted": {"$ne": True}}
        if hub_user is not None:
            query["hub_user"] = hub_user
        cursor = self._notebooks.find(query).sort("updated_at", -1).skip(offset).limit(limit)
        return [doc async for doc in cursor]

    async def rename(
        self, tenant_id: str, notebook_id: str, name: str, outbox: Entries
    ) -> Document | None:
        """Change the display name, with its event; the record as it was."""
        return await self._notebooks.find_one_and_update(
            {"_id": self.key(tenant_id, notebook_id)},
            {"$set": {"name": name, "updated_at": datetime.now(UTC), **as_fields(outbox)}},
            return_document=ReturnDocument.BEFORE,
        )

    async def delete(self, tenant_id: str, notebook_id: str, outbox: Entries) -> Document | None:
        """Leave a tombstone, with its event; the record as it was."""
        return await self._notebooks.find_one_and_update(
            {"_id": self.key(tenant_id, notebook_id)},
            {"$set": {"deleted": True, "updated_at": datetime.now(UTC), **as_fields(outbox)}},
            return_document=ReturnDocument.BEFORE,
        )


class OpenFiles:
    """Which notebook a file on a user's server is, while a session has it open.

    Saves Jupyter reports itself (autosave, Ctrl-S) name only the user and the
    file; this is how the gateway knows which notebook, and whether it may
    still be stored. A file is mapped only while at least one session that
    opened it has not ended: ending the session ends storing its saves.
    """

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._files = client[database]["gateway_open_files"]

    @staticmethod
    def _key(hub_user: str, path: str) -> str:
        return f"{hub_user}:{path}"

    async def record(
        self, hub_user: str, path: str, tenant_id: str, notebook_id: str, session_id: str
    ) -> None:
        """Remember that ``path`` on ``hub_user``'s server is this notebook, for this session."""
        mapped = {"tenant_id": tenant_id, "notebook_id": notebook_id}
        update = {"$set": {**mapped, f"sessions.{session_id}": True}}
        key = self._key(hub_user, path)
        await upsert(lambda: self._files.update_one({"_id": key}, update, upsert=True))

    async def release(self, hub_user: str, path: str, session_id: str) -> None:
        """The session ended: its file stays mapped only for the user's other sessions on it."""
        await self._files.update_one(
            {"_id": self._key(hub_user, path)}, {"$unset": {f"sessions.{session_id}": ""}}
        )

    async def get(self, hub_user: str, path: str) -> Document | None:
        """The notebook at ``path`` on ``hub_user``'s server while a session has it open."""
        found = await self._files.find_one({"_id": self._key(hub_user, path)})
        return found if found is not None and found.get("sessions") else None


class SessionRestores:
    """The last restore that rewrote each open session's file: its id and revision.

    The SDK follows its session and reloads the page's notebook when the id
    changes (GET /v1/sessions/{id}?restore_id=... waits for it). A fresh id at
    every restore, not a count: FerretDB 1.x applies an update by reading and
    rewriting the whole document, so two restores at once could lose an
    increment, while either one's id still differs from what the page knows.
    Kept apart from the session records for the same reason: a restore's write
    racing the projection's end of the session could bring it back to ``ready``.
    """

    COLLECTION = "gateway_session_restores"

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._restores = client[database][self.COLLECTION]

    async def record(self, session_id: str, revision: int) -> None:
        """A restore wrote ``revision`` into the session's file."""
        update = {"$set": {"restore_id": uuid.uuid4().hex, "revision": revision}}
        await upsert(lambda: self._restores.update_one({"_id": session_id}, update, upsert=True))

    async def get(self, session_id: str) -> tuple[str, int | None]:
        """The last restore's id ("" when none) and the revision it wrote."""
        found = await self._restores.find_one({"_id": session_id})
        if found is None:
            return "", None
        return str(found["restore_id"]), int(found["revision"])


class InputRecords:
    """Input files hosts uploaded, without their bytes (sync keeps those)."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._inputs = client[database]["gateway_inputs"]

    @staticmethod
    def _key(tenant_id: str, input_id: str) -> str:
        return f"{tenant_id}/{input_id}"

    async def record(self, tenant_id: str, meta: Document) -> Document:
        """Remember an uploaded input's metadata (id, name, size, sha256)."""
        doc = {**meta, "tenant_id": tenant_id, "created_at": datetime.now(UTC)}
        key = self._key(tenant_id, meta["id"])
        await upsert(lambda: self._inputs.replace_one({"_id": key}, doc, upsert=True))
        return doc

    async def get(self, tenant_id: str, input_id: str) -> Document | None:
        """The tenant's input, or None."""
        return await self._inputs.find_one({"_id": self._key(tenant_id, input_id)})

    async def delete(self, tenant_id: str, input_id: str) -> bool:
        """Forget the tenant's input; whether it existed."""
        result = await self._inputs.delete_one({"_id": self._key(tenant_id, input_id)})
        return result.deleted_count == 1


class WarmUps:
    """The last warm-up asked for each hub user, with its events until they are published.

    A record per user (``_id`` the hub user) so the outbox can hold the
    warm-up's event like a session's: the 202 stands even if Kafka fails
    right after it.
    """

    COLLECTION = "gateway_warmups"

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._warmups = client[database][self.COLLECTION]

    async def record(self, hub_user: str, fields: Document, entries: Entries) -> Document:
        """Record a warm-up of ``hub_user`` and its pending events; the record after it."""
        # Replaced, not added to: the latest warm-up's event is the one owed.
        update = {"$set": {**fields, "requested_at": datetime.now(UTC), "outbox": entries}}
        doc: Document | None = await upsert(
            lambda: self._warmups.find_one_and_update(
                {"_id": hub_user}, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        )
        assert doc is not None  # an upsert always leaves a document
        return doc
