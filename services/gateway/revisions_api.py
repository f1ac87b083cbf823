"""Revisions (v1): compare two, restore one, and read one as a page, without a Jupyter server."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from schemas.events import HostUserId, RevisionLabel
from services.gateway import rendering
from services.gateway.deps import Gateway, GatewayDep, TenantDep
from services.gateway.library_api import _summary, _sync_down
from services.gateway.problems import Problem, errors
from services.gateway.sync_client import SyncUnavailable
from services.gateway.tenants import Tenant

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/notebooks", tags=["revisions"])

RENDER_SLOTS = asyncio.Semaphore(2)
"""Diffs and renders at once per replica (CPU-bound, in threads; the machines have 2 cores)."""


class DiffEntry(BaseModel):
    """One step of nbdime's diff format: what changes at ``key`` of the parent value.

    ``add``/``replace`` carry ``value``; ``remove`` nothing else; ``patch`` a
    nested ``diff`` of the value at ``key``; ``addrange`` inserts
    ``valuelist`` before index ``key`` (a list, or a string for text);
    ``removerange`` removes ``length`` items from ``key``.
    """

    op: Literal["add", "remove", "replace", "patch", "addrange", "removerange"]
    key: int | str = Field(description="A dict key, or an index into a list or string.")
    value: Any = None
    valuelist: list[Any] | str | None = None
    length: int | None = None
    diff: list[DiffEntry] | None = None


class RevisionRef(BaseModel):
    """One end of a diff."""

    revision: int
    sha256: str
    created_at: datetime
    label: str | None = None
    author: str | None = None


class NotebookDiff(BaseModel):
    """How revision ``to`` differs from revision ``from`` (``diff`` is empty when equal)."""

    model_config = ConfigDict(populate_by_name=True)

    notebook_id: str
    from_: RevisionRef = Field(alias="from")
    to: RevisionRef
    format: Literal["nbdime"] = Field(
        description="nbdime's JSON diff format: "
        "`nbdime.patch(from_content, nbdime.diff_utils.to_diffentry_dicts(diff))` "
        "gives `to`'s content."
    )
    diff: list[DiffEntry]


class RestoreRequest(BaseModel):
    """Who restores (a host user id) and why; both optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    author: HostUserId | None = None
    label: RevisionLabel | None = Field(
        default=None, description='Default: "restored from revision N".'
    )


class Restored(BaseModel):
    """The revision a restore made (or the latest, unchanged, when it already had that content)."""

    notebook_id: str
    revision: int
    restored_from: int
    changed: bool = Field(description="False when the latest revision already had this content.")
    sessions_updated: int = Field(
        description="Open sessions whose notebook file now holds the restored content."
    )
    sessions_not_updated: int = Field(
        description="Open sessions whose server could not be written (they keep their file)."
    )
    links: dict[str, str]


def _revision_gone(notebook_id: str, revision: int | None) -> Problem:
    detail = f"Notebook {notebook_id} has no revision {revision} (any more)."
    return Problem(404, "Not found", detail, kind="revision-not-found")


async def _fetch(
    parts: Gateway, tenant_id: str, notebook_id: str, revision: int | None
) -> tuple[dict[str, Any], int]:
    try:
        found = await parts.sync.revision_sized(tenant_id, notebook_id, revision)
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    if found is None:
        raise _revision_gone(notebook_id, revision)
    return found


def _ref(stored: dict[str, Any]) -> RevisionRef:
    fields = {k: v for k, v in stored.items() if k in RevisionRef.model_fields}
    return RevisionRef.model_validate(fields)


@router.get(
    "/{notebook_id}/diff",
    response_model=NotebookDiff,
    response_model_by_alias=True,
    responses=errors(503),
)
async def diff_revisions(  # the diff goes out as nbdime made it (a null value is a value)
    notebook_id: str,
    tenant: TenantDep,
    parts: GatewayDep,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**31, description="The older revision.")],
    to: Annotated[
        int | None, Query(ge=1, le=2**31, description="The newer revision (default: the latest).")
    ] = None,
) -> JSONResponse:
    """A notebook-aware diff (cells, sources, outputs, metadata) between two revisions.

    Bounded: two revisions whose stored JSON together exceeds
    ``NBEMBED_GATEWAY_MAX_DIFF_BYTES`` (4 MiB) are refused with 422
    ``diff-too-large`` instead of being compared.
    """
    await _summary(parts, tenant.id, notebook_id)
    (before, size_a), (after, size_b) = await asyncio.gather(
        _fetch(parts, tenant.id, notebook_id, from_),
        _fetch(parts, tenant.id, notebook_id, to),
    )
    limit = parts.settings.max_diff_bytes
    if size_a + size_b > limit:
        detail = (
            f"Revisions {from_} and {after['revision']} hold {(size_a + size_b) / 2**20:.1f} MiB "
            f"together; diffs compare at most {limit / 2**20:.1f} MiB."
        )
        raise Problem(422, "Invalid request", detail, kind="diff-too-large")
    async with RENDER_SLOTS:
        entries = await asyncio.to_thread(rendering.diff, before["content"], after["content"])
    return JSONResponse(
        {
            "notebook_id": notebook_id,
            "from": _ref(before).model_dump(mode="json"),
            "to": _ref(after).model_dump(mode="json"),
            "format": "nbdime",
            "diff": entries,
        }
    )


@router.post(
    "/{notebook_id}/revisions/{revision}/restore",
    response_model=Restored,
    responses=errors(503),
)
async def restore_revision(
    notebook_id: str,
    revision: Annotated[int, Path(ge=1, le=2**31)],
    tenant: TenantDep,
    parts: GatewayDep,
    body: RestoreRequest | None = None,
) -> Restored:
    """Make revision ``revision`` the latest: a new revision with its content.

    The new revision is labelled (``restored from revision N`` unless a label
    is given) and attributed to ``author``. Sessions that have the notebook
    open get the restored content written into their file on their server
    (count in ``sessions_updated``), so the next save starts from it.
    """
    await _summary(parts, tenant.id, notebook_id)
    request = body or RestoreRequest()
    sessions = [
        s for s in await parts.sessions.open_on_notebook(tenant.id, notebook_id) if s.get("path")
    ]
    open_files = [{"hub_user": s["hub_user"], "path": s["path"]} for s in sessions]
    try:
        restored = await parts.sync.restore(
            tenant.id,
            notebook_id,
            revision,
            {**request.model_dump(exclude_none=True), "open_files": open_files},
        )
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    if restored is None:
        raise _revision_gone(notebook_id, revision)
    written = set(restored["written"])
    await _tell_open_pages(
        parts, [s["_id"] for s in sessions if s["hub_user"] in written], restored["revision"]
    )
    return Restored(
        notebook_id=notebook_id,
        revision=restored["revision"],
        restored_from=revision,
        changed=restored["changed"],
        sessions_updated=sum(1 for f in open_files if f["hub_user"] in written),
        sessions_not_updated=sum(1 for f in open_files if f["hub_user"] in restored["not_written"]),
        links={"notebook": f"/v1/notebooks/{notebook_id}?revision={restored['revision']}"},
    )


async def _tell_open_pages(parts: Gateway, session_ids: list[str], revision: int) -> None:
    """Sessions whose file a restore rewrote: their pages' SDKs (following the session)
    wake on every replica and reload the notebook, so no "file changed on disk" dialog
    awaits the user's next save.

    The restore is durable by now: a store error here is logged, never the answer (a
    retried restore would add a revision); that page's user gets the dialog instead.
    """
    for session_id in session_ids:
        try:
            await parts.restores.record(session_id, revision)
        except PyMongoError:
            log.exception("restore not told to an open page", extra={"session_id": session_id})
            continue
        parts.sessions.changes.notify(session_id)


def view_shows_outputs(tenant: Tenant, stored: dict[str, Any]) -> bool:
    """Whether a view may show outputs: not of a restricted tenant's notebook, nor of a
    revision saved in a restricted session (a view is an export; the outputs are the data)."""
    return not tenant.restricted and not stored.get("restricted")


@router.get(
    "/{notebook_id}/view",
    response_class=Response,
    responses={
        200: {
            "description": "The revision as an inert HTML page (strict CSP, sandboxed).",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **errors(503),
    },
)
async def view_revision(
    notebook_id: str,
    tenant: TenantDep,
    parts: GatewayDep,
    revision: Annotated[
        int | None, Query(ge=1, le=2**31, description="Default: the latest.")
    ] = None,
) -> Response:
    """A stored revision as sanitised HTML, rendered by nbconvert with no server or kernel.

    Nothing in it runs: outputs' scripts, event handlers, ``javascript:``
    links, iframes and widgets are removed, and the page is served with
    ``Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';
    img-src data:; sandbox``. For a restricted tenant, or a revision saved
    in a restricted session, the view shows cells without their outputs.
    """
    summary = await _summary(parts, tenant.id, notebook_id)
    stored, _ = await _fetch(parts, tenant.id, notebook_id, revision)
    outputs = view_shows_outputs(tenant, stored)
    key = (notebook_id, int(stored["revision"]), str(stored["sha256"]), outputs)
    page = parts.views.get(key)
    if page is None:
        async with RENDER_SLOTS:
            page = await asyncio.to_thread(
                rendering.render_html, stored["content"], title=summary["name"], outputs=outputs
            )
        parts.views.put(key, page)
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": rendering.VIEW_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, no-cache",
            "ETag": f'"{stored["sha256"][:32]}-{int(outputs)}"',
            "X-Nbembed-Revision": str(stored["revision"]),
        },
    )
