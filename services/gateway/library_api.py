"""The notebook library (v1): a tenant's stored notebooks, like any object it owns."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from schemas import CloudEvent, NotebookDeleted, NotebookRenamed, hub_username
from services.gateway.api import SOURCE, NotebookName, end, pending, record
from services.gateway.deps import Gateway, GatewayDep, TenantDep
from services.gateway.outbox import event_entry
from services.gateway.problems import Problem, errors
from services.gateway.store import Document, NotebookView
from services.gateway.sync_client import SyncUnavailable

router = APIRouter(prefix="/v1/notebooks", tags=["notebooks"])


class NotebookSummary(BaseModel):
    """A stored notebook without its content."""

    id: str
    name: str
    user_id: str | None
    latest_revision: int
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, doc: Document) -> NotebookSummary:
        notebook_id = doc["notebook_id"]
        return cls(
            id=notebook_id,
            name=doc["name"],
            user_id=doc.get("user_id"),
            latest_revision=doc.get("latest_revision", 0),
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            links={
                "self": f"/v1/notebooks/{notebook_id}",
                "revisions": f"/v1/notebooks/{notebook_id}/revisions",
            },
        )


class NotebookPage(BaseModel):
    items: list[NotebookSummary]
    next_cursor: str | None


class Notebook(NotebookSummary):
    """A stored notebook with the content of one revision."""

    revision: int
    label: str | None = None
    author: str | None = None
    restored_from: int | None = None
    restricted: bool = False
    content: dict[str, Any]


class Revision(BaseModel):
    revision: int
    sha256: str
    created_at: datetime
    label: str | None = Field(default=None, description="The host's words for it, if any.")
    author: str | None = Field(default=None, description="The host user who caused it.")
    restored_from: int | None = Field(
        default=None, description="The revision whose content a restore copied."
    )
    restricted: bool = Field(
        default=False, description="Saved in restricted-data mode (views show no outputs)."
    )


class RevisionList(BaseModel):
    latest_revision: int
    revisions: list[Revision]


class NotebookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: NotebookName


def _not_found(notebook_id: str) -> Problem:
    return Problem(
        404, "Not found", f"No notebook {notebook_id} for this tenant.", kind="notebook-not-found"
    )


def _sync_down(exc: SyncUnavailable) -> Problem:
    return Problem(503, "Service unavailable", f"Stored notebooks cannot be read now: {exc}")


async def _summary(parts: Gateway, tenant_id: str, notebook_id: str) -> Document:
    doc = await parts.notebooks.get(tenant_id, notebook_id)
    if doc is None:
        raise _not_found(notebook_id)
    return doc


MAX_OFFSET = 1_000_000
"""Deeper than any listing a host pages through; keeps the store's skip in range."""


def _offset(cursor: str | None) -> int:
    """The position a cursor from `list_notebooks` stands for; 422 for anything else."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except ValueError as exc:  # bad base64, padding or bytes (binascii and Unicode errors)
        raise Problem(422, "Invalid request", "cursor: not a cursor from this API") from exc
    if not text.isdigit() or int(text) > MAX_OFFSET:  # also refuses "-1" and huge numbers
        raise Problem(422, "Invalid request", "cursor: not a cursor from this API")
    return int(text)


@router.get("", response_model=NotebookPage)
async def list_notebooks(
    tenant: TenantDep,
    parts: GatewayDep,
    user_id: Annotated[str | None, Query(max_length=512, description="Only this user's.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> NotebookPage:
    """The tenant's notebooks, most recently updated first, a page at a time."""
    offset = _offset(cursor)
    hub_user = hub_username(tenant.id, user_id) if user_id is not None else None
    docs = await parts.notebooks.list(tenant.id, hub_user, offset=offset, limit=limit + 1)
    next_cursor = None
    if len(docs) > limit:
        next_cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
    return NotebookPage(
        items=[NotebookSummary.of(d) for d in docs[:limit]], next_cursor=next_cursor
    )


@router.get("/{notebook_id}", response_model=Notebook, responses=errors(503))
async def get_notebook(
    notebook_id: str,
    tenant: TenantDep,
    parts: GatewayDep,
    revision: Annotated[int | None, Query(ge=1, description="Default: the latest.")] = None,
) -> Notebook:
    """A notebook with its content (the latest revision, or the one asked for)."""
    summary = await _summary(parts, tenant.id, notebook_id)
    try:
        stored = await parts.sync.revision(tenant.id, notebook_id, revision)
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    if stored is None:
        detail = f"Notebook {notebook_id} has no revision {revision} (any more)."
        raise Problem(404, "Not found", detail, kind="revision-not-found")
    return Notebook(
        **NotebookSummary.of(summary).model_dump(),
        revision=stored["revision"],
        label=stored.get("label"),
        author=stored.get("author"),
        restored_from=stored.get("restored_from"),
        restricted=bool(stored.get("restricted")),
        content=stored["content"],
    )


@router.get("/{notebook_id}/revisions", response_model=RevisionList, responses=errors(503))
async def list_revisions(notebook_id: str, tenant: TenantDep, parts: GatewayDep) -> RevisionList:
    """The revisions kept (retention is a sync setting), newest first."""
    await _summary(parts, tenant.id, notebook_id)
    try:
        found = await parts.sync.revisions(tenant.id, notebook_id)
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    if found is None:
        raise _not_found(notebook_id)
    return RevisionList.model_validate(found)


@router.patch("/{notebook_id}", response_model=NotebookSummary)
async def rename_notebook(
    notebook_id: str, body: NotebookPatch, tenant: TenantDep, parts: GatewayDep
) -> NotebookSummary:
    """Rename a notebook (its display name; an open file keeps its path)."""
    await _summary(parts, tenant.id, notebook_id)
    renamed = NotebookRenamed(tenant_id=tenant.id, notebook_id=notebook_id, name=body.name)
    entries = event_entry(CloudEvent.wrap(renamed, source=SOURCE))
    key = NotebookView.key(tenant.id, notebook_id)
    hold, before = await record(
        parts,
        NotebookView.COLLECTION,
        key,
        entries,
        lambda: parts.notebooks.rename(tenant.id, notebook_id, body.name, entries),
    )
    await parts.outbox.deliver(NotebookView.COLLECTION, key, pending(hold, before, entries), hold)
    return NotebookSummary.of(await _summary(parts, tenant.id, notebook_id))


@router.delete("/{notebook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_notebook(notebook_id: str, tenant: TenantDep, parts: GatewayDep) -> Response:
    """Delete a notebook and all its revisions; its open sessions end with the reason."""
    await _summary(parts, tenant.id, notebook_id)
    deleted = NotebookDeleted(tenant_id=tenant.id, notebook_id=notebook_id)
    entries = event_entry(CloudEvent.wrap(deleted, source=SOURCE))
    key = NotebookView.key(tenant.id, notebook_id)
    hold, before = await record(
        parts,
        NotebookView.COLLECTION,
        key,
        entries,
        lambda: parts.notebooks.delete(tenant.id, notebook_id, entries),
    )
    await end_sessions_of_deleted(parts, {"tenant_id": tenant.id, "notebook_id": notebook_id})
    await parts.outbox.deliver(NotebookView.COLLECTION, key, pending(hold, before, entries), hold)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def end_sessions_of_deleted(parts: Gateway, notebook: Document) -> None:
    """End the open sessions of a deleted notebook (idempotent).

    Also run by the outbox relay before it republishes a tombstone's pending
    notebook.deleted: a delete interrupted between its record and its sessions
    still ends them.
    """
    if not notebook.get("deleted", True):
        return
    for session in await parts.sessions.open_on_notebook(
        notebook["tenant_id"], notebook["notebook_id"]
    ):
        await end(parts, session, reason="notebook deleted", code="notebook-deleted")
