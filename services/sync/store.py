"""Sync's MongoDB collections: notebooks, their revisions, and where sessions put them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from services.common.health import store_answers
from services.common.mongo import upsert

Document = dict[str, Any]


def _revision_id(notebook_id: str, revision: int) -> str:
    return f"{notebook_id}:{revision}"


def _file_key(hub_user: str, path: str) -> str:
    return f"file/{hub_user}/{path}"


def _notebook_key(hub_user: str, notebook_id: str) -> str:
    return f"notebook/{hub_user}/{notebook_id}"


def _log_entry(
    revision: int, digest: str, created: datetime, notes: Document | None = None
) -> Document:
    """One line of a notebook's revision history (field order matters to ``$addToSet``).

    ``notes`` (label, author, restored_from, restricted) appear only when given, in the
    order `revision_notes` makes, so an entry rebuilt from the stored
    revision (``_adopt``) equals the one its writer logged.
    """
    return {"revision": revision, "sha256": digest, "created_at": created, **(notes or {})}


NOTE_FIELDS = ("label", "author", "restored_from", "restricted")
"""What a revision may say about itself besides its content, in a fixed order."""


def revision_notes(
    label: str | None = None,
    author: str | None = None,
    restored_from: int | None = None,
    restricted: bool = False,
) -> Document:
    """A revision's notes: who caused it, why, and whether its data is restricted.

    Fields not given are left out (``restricted`` only appears when true).
    """
    given = {
        "label": label,
        "author": author,
        "restored_from": restored_from,
        "restricted": True if restricted else None,
    }
    return {key: given[key] for key in NOTE_FIELDS if given[key] is not None}


def content_sha256(notebook: dict[str, Any]) -> str:
    """A stable digest of a notebook's content (key order does not matter)."""
    canonical = json.dumps(notebook, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_content(notebook: dict[str, Any]) -> bytes:
    """A notebook as stored in a revision: its JSON text, zlib-compressed.

    Not a nested document, because notebooks carry keys a document may not:
    MIME types with dots (ipywidgets' ``application/vnd.jupyter.widget-state+json``,
    Plotly's ``application/vnd.plotly.v1+json``), which FerretDB refuses, and any
    key a user's code writes into metadata, ``$`` included. Level 1: most of the
    size win (outputs repeat a lot) for little CPU on the save path.
    """
    text = json.dumps(notebook, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode(), 1)


def decode_content(revision: Document) -> dict[str, Any]:
    """The notebook of a stored revision (also one stored before content was encoded)."""
    if "content_z" in revision:
        decoded: dict[str, Any] = json.loads(zlib.decompress(revision["content_z"]))
        return decoded
    legacy: dict[str, Any] = revision["content"]
    return legacy


def _with_content(revision: Document | None) -> Document | None:
    """A stored revision as readers use it: ``content`` is the notebook itself."""
    if revision is None:
        return None
    revision["content"] = decode_content(revision)
    revision.pop("content_z", None)
    return revision


class NotebookStore:
    """Stored notebooks, every lookup scoped by tenant."""

    def __init__(
        self, client: AsyncMongoClient[Document], database: str, *, revisions_kept: int
    ) -> None:
        db = client[database]
        self._client = client
        self._revisions_kept = revisions_kept
        self._notebooks = db["notebooks"]
        self._revisions = db["notebook_revisions"]
        self._placements = db["sync_placements"]
        self._files = db["sync_files"]

    async def answers(self) -> bool:
        """The store answers a ping within a probe's time (a hung store does not)."""
        return await store_answers(self._client)

    async def get_notebook(self, tenant_id: str, notebook_id: str) -> Document | None:
        """The tenant's notebook record, or None."""
        # By _id alone: FerretDB's SQLite backend scans the collection for any
        # other filter, so the tenant is checked here.
        record = await self._notebooks.find_one({"_id": notebook_id})
        if record is None or record["tenant_id"] != tenant_id or record.get("deleted"):
            return None
        return record

    async def claim_new_notebook(self, notebook: Document) -> Document:
        """Insert a new notebook record unless one with its id exists; return the stored one.

        A redelivered request finds the first attempt's record (same id, same
        path), so it never creates a second notebook.
        """
        now = datetime.now(UTC)
        record = {
            **notebook,
            "latest_revision": 0,
            "revision_log": [],
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._notebooks.insert_one(record)
            return record
        except DuplicateKeyError:
            stored = await self._notebooks.find_one({"_id": notebook["_id"]})
            assert stored is not None
            return stored

    async def latest_revision(self, notebook_id: str) -> Document | None:
        """The newest stored revision of a notebook, content included."""
        record = await self._notebooks.find_one({"_id": notebook_id})
        if record is None or not record.get("latest_revision"):
            return None
        return _with_content(
            await self._revisions.find_one(
                {"_id": _revision_id(notebook_id, record["latest_revision"])}
            )
        )

    async def add_revision(
        self, notebook: Document, content: dict[str, Any], notes: Document | None = None
    ) -> tuple[int, str, bool]:
        """Store ``content`` as the next revision unless it equals the latest.

        ``notes`` (from `revision_notes`) are kept with a new revision and in
        the history; content equal to the latest stores nothing, notes included
        (the latest revision already says what that content is).

        Returns (revision, sha256, changed). Every access is by ``_id`` (FerretDB's
        SQLite backend scans the collection for anything else): the record keeps
        the latest revision number, revision ids are ``<notebook>:<n>``, and two
        writers racing for the same number collide on ``_id``, the loser moving
        the record on and retrying. The record's number only grows (``$max``), so
        a writer that died between the two writes is repaired by the next one.
        """
        notebook_id = notebook["_id"]
        digest = content_sha256(content)
        # The caller's record was read just now: a stale one only costs a retry (its
        # revision number collides on _id), so the first pass spares a round trip.
        record: Document | None = notebook
        while True:
            if record is None:
                record = await self._notebooks.find_one({"_id": notebook_id})
            assert record is not None, f"notebook {notebook_id} has no record"
            latest = record.get("latest_revision", 0)
            record = None
            if latest:
                current = await self._revisions.find_one(
                    {"_id": _revision_id(notebook_id, latest)}, {"sha256": 1}
                )
                if current is not None and current["sha256"] == digest:
                    return latest, digest, False
            revision = latest + 1
            # Millisecond precision, as stored: the history entry written here and
            # one rebuilt from the stored revision (``_adopt``) are then equal.
            now = datetime.now(UTC)
            created = now.replace(microsecond=now.microsecond // 1000 * 1000)
            try:
                await self._revisions.insert_one(
                    {
                        "_id": _revision_id(notebook_id, revision),
                        "notebook_id": notebook_id,
                        "tenant_id": notebook["tenant_id"],
                        "revision": revision,
                        "sha256": digest,
                        "content_z": encode_content(content),
                        "created_at": created,
                        **(notes or {}),
                    }
                )
            except DuplicateKeyError:
                await self._adopt(notebook_id, revision)
                await asyncio.sleep(0.01)
                continue
            entry = _log_entry(revision, digest, created, notes)
            await self._move_latest(notebook_id, revision, entry)
            await self._apply_retention(notebook_id, revision)
            return revision, digest, True

    async def _adopt(self, notebook_id: str, revision: int) -> None:
        """Move the record onto a revision another writer stored, and list it in the history.

        That writer may have died between its two writes (a SIGKILL, an OOM):
        without this, the revision would exist and be the latest, yet be
        missing from the history hosts read. A writer that is only slower adds
        the same entry, which ``$addToSet`` keeps once.
        """
        stored = await self._revisions.find_one(
            {"_id": _revision_id(notebook_id, revision)},
            {"sha256": 1, "created_at": 1, **dict.fromkeys(NOTE_FIELDS, 1)},
        )
        entry = None
        if stored is not None:
            created = stored["created_at"].replace(tzinfo=UTC)
            notes = {key: stored[key] for key in NOTE_FIELDS if stored.get(key) is not None}
            entry = _log_entry(revision, stored["sha256"], created, notes)
        await self._move_latest(notebook_id, revision, entry)

    async def _move_latest(
        self, notebook_id: str, revision: int, entry: Document | None = None
    ) -> None:
        update: Document = {"$max": {"latest_revision": revision, "updated_at": datetime.now(UTC)}}
        if entry is not None:
            update["$addToSet"] = {"revision_log": entry}
        await self._notebooks.update_one({"_id": notebook_id}, update)

    async def _apply_retention(self, notebook_id: str, revision: int) -> None:
        """Keep the newest ``revisions_kept`` revisions; drop the one that fell out."""
        dropped = revision - self._revisions_kept
        if dropped < 1:
            return
        await self._revisions.delete_one({"_id": _revision_id(notebook_id, dropped)})
        # Revisions are logged in order, so the oldest entry is the first.
        # ($pop, because FerretDB ignores $pull with a condition.)
        record = await self._notebooks.find_one({"_id": notebook_id}, {"revision_log": 1})
        if record and len(record.get("revision_log", [])) > self._revisions_kept:
            await self._notebooks.update_one({"_id": notebook_id}, {"$pop": {"revision_log": -1}})

    async def revision(self, tenant_id: str, notebook_id: str, number: int) -> Document | None:
        """One stored revision of the tenant's notebook, content included."""
        found = await self._revisions.find_one({"_id": _revision_id(notebook_id, number)})
        if found is None or found["tenant_id"] != tenant_id:
            return None
        return _with_content(found)

    async def rename(self, tenant_id: str, notebook_id: str, name: str) -> bool:
        """Change the tenant's notebook's display name (its file keeps its path).

        False, changing nothing, when the notebook is not the tenant's.
        """
        if await self.get_notebook(tenant_id, notebook_id) is None:
            return False
        await self._notebooks.update_one(
            {"_id": notebook_id}, {"$set": {"name": name, "updated_at": datetime.now(UTC)}}
        )
        return True

    async def delete(self, tenant_id: str, notebook_id: str) -> bool:
        """Remove the tenant's notebook and every revision of it (idempotent).

        False, deleting nothing, when no such notebook is the tenant's (also
        when it is gone already).
        """
        record = await self._notebooks.find_one(
            {"_id": notebook_id}, {"latest_revision": 1, "tenant_id": 1}
        )
        if record is None or record.get("tenant_id") != tenant_id:
            return False
        for number in range(1, record.get("latest_revision", 0) + 1):
            await self._revisions.delete_one({"_id": _revision_id(notebook_id, number)})
        # Its files on users' servers stop being this notebook (a scan: deletes are rare).
        await self._files.delete_many({"notebook_id": notebook_id})
        await self._notebooks.delete_one({"_id": notebook_id})
        return True

    async def file_of(self, hub_user: str, notebook_id: str) -> str | None:
        """The path of the notebook's own file on ``hub_user``'s server, if it has one."""
        bound = await self._files.find_one({"_id": _notebook_key(hub_user, notebook_id)})
        return None if bound is None else str(bound["path"])

    async def place(
        self,
        hub_user: str,
        notebook: Document,
        choose: Callable[[set[str]], str],
    ) -> str:
        """The notebook's own file on ``hub_user``'s server, claiming one on first use.

        A file belongs to one notebook and a notebook has one file per user, so
        opening notebook B never writes over A's file and a save of a file is
        a revision of exactly one notebook. ``choose(refused)`` proposes a path
        whose file name is not in ``refused``; each path is claimed with an
        insert keyed by ``_id`` (atomic on any MongoDB-compatible server), and
        a path claimed by another notebook is refused and another proposed.
        Idempotent: a notebook already placed keeps its file.
        """
        notebook_id = notebook["_id"]
        bound = await self.file_of(hub_user, notebook_id)
        if bound is not None:
            return bound
        refused: set[str] = set()
        while True:
            path = choose(refused)
            if await self._claim_path(hub_user, path, notebook):
                break
            refused.add(path.rsplit("/", 1)[-1])
        try:
            await self._files.insert_one(
                {
                    "_id": _notebook_key(hub_user, notebook_id),
                    "notebook_id": notebook_id,
                    "hub_user": hub_user,
                    "path": path,
                }
            )
            return path
        except DuplicateKeyError:  # a concurrent placement won: use its file, free ours
            bound = await self.file_of(hub_user, notebook_id)
            assert bound is not None
            if bound != path:
                await self._files.delete_one({"_id": _file_key(hub_user, path)})
            return bound

    async def _claim_path(self, hub_user: str, path: str, notebook: Document) -> bool:
        """Claim ``path`` for the notebook; False when another notebook holds it."""
        try:
            await self._files.insert_one(
                {
                    "_id": _file_key(hub_user, path),
                    "notebook_id": notebook["_id"],
                    "tenant_id": notebook["tenant_id"],
                    "hub_user": hub_user,
                    "at": datetime.now(UTC),
                }
            )
            return True
        except DuplicateKeyError:
            holder = await self._files.find_one({"_id": _file_key(hub_user, path)})
            return holder is not None and holder["notebook_id"] == notebook["_id"]

    async def placement(self, session_id: str) -> Document | None:
        """Where a session's notebook was put, if it was."""
        return await self._placements.find_one({"_id": session_id})

    async def record_placement(self, session_id: str, notebook_id: str, path: str) -> None:
        """Remember that the session's notebook is in place (idempotent)."""
        placed = {
            "$setOnInsert": {"notebook_id": notebook_id, "path": path, "at": datetime.now(UTC)}
        }
        await upsert(lambda: self._placements.update_one({"_id": session_id}, placed, upsert=True))
