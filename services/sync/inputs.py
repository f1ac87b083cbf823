"""Input files: sync keeps their bytes and makes each user's ``inputs/`` match.

The gateway hands sync the bytes a host uploads (sync owns stored content);
placing goes through nbembed's extension on the user's server
(``infra/hub/singleuser_python/nbembed_inputs.py``), which keeps the files
read-only. Inputs never enter a notebook's revisions.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from schemas import CloudEvent, InputFile, InputsChanged
from services.common.mongo import upsert
from services.sync.contents import ContentsClient, ContentsError

log = logging.getLogger(__name__)

Document = dict[str, Any]


class InputNotFound(Exception):
    """An attached input's bytes are not in the store (deleted after it was attached)."""


class InputStore:
    """Input file bytes, by tenant and id."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._inputs = client[database]["sync_inputs"]

    @staticmethod
    def _key(tenant_id: str, input_id: str) -> str:
        return f"{tenant_id}/{input_id}"

    async def put(self, tenant_id: str, input_id: str, name: str, content: bytes) -> Document:
        """Keep an input's bytes (idempotent for the same bytes); its metadata back."""
        meta = {
            "tenant_id": tenant_id,
            "name": name,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        key = self._key(tenant_id, input_id)
        stored = {"$set": {**meta, "content": content, "stored_at": datetime.now(UTC)}}
        await upsert(lambda: self._inputs.update_one({"_id": key}, stored, upsert=True))
        return {"id": input_id, **meta}

    async def content(self, tenant_id: str, input_id: str) -> bytes:
        """The bytes of the tenant's input; `InputNotFound` if it is gone."""
        found = await self._inputs.find_one({"_id": self._key(tenant_id, input_id)})
        if found is None:
            raise InputNotFound(input_id)
        return bytes(found["content"])

    async def delete(self, tenant_id: str, input_id: str) -> None:
        """Forget an input's bytes (idempotent); copies placed on servers stay until detached."""
        await self._inputs.delete_one({"_id": self._key(tenant_id, input_id)})


class InputPlacer:
    """Puts input files on users' servers and takes them away."""

    def __init__(self, contents: ContentsClient, store: InputStore) -> None:
        self._contents = contents
        self._store = store

    async def place(self, server_path: str, tenant_id: str, inputs: list[InputFile]) -> None:
        """Add ``inputs`` to the server's ``inputs/`` (others stay): before session.ready."""
        if not inputs:
            return
        present = await self._contents.list_inputs(server_path)
        missing = []
        for item in inputs:
            if present.get(item.name) == item.sha256:
                continue
            try:
                content = await self._store.content(tenant_id, item.id)
            except InputNotFound:
                missing.append(item.name)
                continue
            await self._contents.put_input(server_path, item.name, content)
        if missing:
            raise InputNotFound(", ".join(missing))

    async def on_inputs_changed(self, event: CloudEvent[InputsChanged]) -> None:
        """Make the user's ``inputs/`` exactly the set of their open sessions (idempotent).

        A server that no longer runs has nothing to change: the next session's
        server.ready places that session's inputs.
        """
        changed = event.data
        server_path = f"/user/{changed.hub_user}/"
        try:
            present = await self._contents.list_inputs(server_path)
        except ContentsError as exc:
            if exc.status in (404, 424, 503):
                log.info(
                    "inputs unchanged: server not running", extra={"hub_user": changed.hub_user}
                )
                return
            raise
        wanted = {item.name: item for item in changed.inputs}
        for name in present.keys() - wanted.keys():
            await self._contents.delete_input(server_path, name)
        try:
            await self.place(server_path, changed.tenant_id, changed.inputs)
        except InputNotFound as exc:
            log.warning("attached inputs are gone", extra={"names": str(exc)})
