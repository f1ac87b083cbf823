"""Sync's internal HTTP API: the gateway reads stored notebooks and hands over input files.

Sync owns the stored notebooks; the gateway serves them to host apps without
touching sync's collections. Every call carries the internal token
(``Authorization: Bearer``) and a tenant id, and another tenant's notebook
does not exist.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from schemas import InputFile
from schemas.events import HostUserId, HubUser, NotebookPath, RevisionLabel
from services.sync.handlers import SyncHandlers
from services.sync.inputs import InputStore
from services.sync.store import NOTE_FIELDS, NotebookStore


class OpenFile(BaseModel):
    """A notebook's file on a user's server that a session has open."""

    hub_user: HubUser
    path: NotebookPath


class RestoreRequest(BaseModel):
    """Who restores, why, and the files open sessions have (from the gateway)."""

    model_config = ConfigDict(extra="forbid")

    author: HostUserId | None = None
    label: RevisionLabel | None = None
    open_files: list[OpenFile] = Field(default_factory=list, max_length=1000)


def create_internal_api(
    store: NotebookStore,
    inputs: InputStore,
    token: str,
    *,
    max_input_bytes: int,
    handlers: SyncHandlers,
) -> FastAPI:
    """The internal API, to mount under ``/internal`` of sync's HTTP server."""

    def authorised(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "internal token required")

    api = FastAPI(
        title="nbembed sync (internal)",
        dependencies=[Depends(authorised)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def record(tenant_id: str, notebook_id: str) -> dict[str, Any]:
        found = await store.get_notebook(tenant_id, notebook_id)
        if found is None:
            raise HTTPException(404, f"no notebook {notebook_id}")
        return found

    @api.get("/notebooks/{notebook_id}/revisions")
    async def revisions(notebook_id: str, tenant_id: Annotated[str, Query()]) -> dict[str, Any]:
        """The revisions kept, newest first (without content)."""
        found = await record(tenant_id, notebook_id)
        log: list[dict[str, Any]] = sorted(
            found.get("revision_log", []), key=lambda entry: -entry["revision"]
        )
        return {"latest_revision": found.get("latest_revision", 0), "revisions": log}

    @api.get("/notebooks/{notebook_id}/revisions/{number}")
    async def revision(
        notebook_id: str, number: str, tenant_id: Annotated[str, Query()]
    ) -> dict[str, Any]:
        """One revision with its content; ``latest`` for the newest."""
        found = await record(tenant_id, notebook_id)
        wanted = found.get("latest_revision", 0) if number == "latest" else _int(number)
        stored = await store.revision(tenant_id, notebook_id, wanted)
        if stored is None:
            raise HTTPException(404, f"no revision {number} of notebook {notebook_id}")
        created: datetime = stored["created_at"]
        return {
            "revision": stored["revision"],
            "sha256": stored["sha256"],
            "created_at": created.isoformat(),
            **{key: stored[key] for key in NOTE_FIELDS if stored.get(key) is not None},
            "content": stored["content"],
        }

    @api.post("/notebooks/{notebook_id}/revisions/{number}/restore")
    async def restore(
        notebook_id: str, number: str, body: RestoreRequest, tenant_id: Annotated[str, Query()]
    ) -> dict[str, Any]:
        """Make revision ``number`` the latest, also in the open sessions' files."""
        restored = await handlers.restore(
            tenant_id,
            notebook_id,
            _int(number),
            author=body.author,
            label=body.label,
            open_files=[(f.hub_user, f.path) for f in body.open_files],
        )
        if restored is None:
            raise HTTPException(404, f"no revision {number} of notebook {notebook_id}")
        return restored

    @api.put("/inputs/{input_id}")
    async def put_input(
        input_id: str, request: Request, tenant_id: Annotated[str, Query()], name: str
    ) -> dict[str, Any]:
        """Keep an input file's bytes (the gateway checked the caller and the size)."""
        content = await request.body()
        if len(content) > max_input_bytes:
            raise HTTPException(413, "input file too large")
        meta = await inputs.put(tenant_id, input_id, name, content)
        fields = {key: meta[key] for key in InputFile.model_fields}
        return InputFile.model_validate(fields).model_dump()

    @api.delete("/inputs/{input_id}", status_code=204)
    async def delete_input(input_id: str, tenant_id: Annotated[str, Query()]) -> Response:
        """Forget an input file's bytes (idempotent)."""
        await inputs.delete(tenant_id, input_id)
        return Response(status_code=204)

    return api


def _int(value: str) -> int:
    if not value.isdigit():
        raise HTTPException(404, f"no revision {value}")
    return int(value)
