"""Input files (v1): data a host hands to its user's notebook, read-only, never stored back.

A host uploads a file once (``POST /v1/inputs``), names it when it opens a
session (``inputs`` in ``POST /v1/sessions``) or attaches it to a ready one
(``PUT /v1/sessions/{id}/inputs/{input_id}``), and may detach it again. Sync
places the files in ``inputs/`` of the user's server, read-only, before the
session is ready; they are not part of the notebook's revisions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas import AuditKind, AuditRecorded, InputFile
from schemas.events import MAX_INPUTS, InputName
from services.gateway import audit
from services.gateway.api import record, session_not_found
from services.gateway.attachments import (
    check_names,
    input_not_found,
    inputs_entry,
    resolve,
    user_inputs,
)
from services.gateway.deps import Gateway, GatewayDep, TenantDep
from services.gateway.outbox import Entries, event_entry
from services.gateway.problems import Problem, errors
from services.gateway.store import Document, SessionStore
from services.gateway.sync_client import SyncUnavailable

UPLOAD_PATH = "/v1/inputs"
router = APIRouter(prefix="/v1", tags=["inputs"])


class InputView(BaseModel):
    """An uploaded input file."""

    id: str
    name: str
    size: int
    sha256: str
    created_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, doc: Document) -> InputView:
        """The host's view of a stored input's metadata."""
        return cls(
            id=doc["id"],
            name=doc["name"],
            size=doc["size"],
            sha256=doc["sha256"],
            created_at=doc["created_at"],
            links={"self": f"{UPLOAD_PATH}/{doc['id']}"},
        )


def _sync_down(exc: SyncUnavailable) -> Problem:
    return Problem(503, "Service unavailable", f"Input files cannot be stored now: {exc}")


def _valid_name(name: str) -> str:
    class _Name(BaseModel):
        name: InputName

    try:
        return _Name(name=name).name
    except ValidationError as exc:
        raise Problem(
            422,
            "Invalid input file name",
            "A name of 1-128 letters, digits, '.', '_', '-' or spaces, not starting with a dot "
            f"or any folder: {exc.errors()[0]['msg']}",
            kind="invalid-input-name",
        ) from exc


@router.post(
    "/inputs",
    status_code=status.HTTP_201_CREATED,
    response_model=InputView,
    responses=errors(503),
    openapi_extra={
        "requestBody": {
            # No body is an empty file (as a body of zero bytes is).
            "required": False,
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "description": "The file's bytes."}
                }
            },
        }
    },
)
async def upload_input(
    request: Request,
    tenant: TenantDep,
    parts: GatewayDep,
    response: Response,
    name: Annotated[
        str,
        Query(
            description="The file's name in the user's inputs/ folder.",
            # Documented, not checked by FastAPI: `_valid_name` answers a specific problem.
            json_schema_extra=TypeAdapter(InputName).json_schema(),
        ),
    ],
) -> InputView:
    """Upload an input file (the body is its bytes, up to the gateway's input limit)."""
    filename = _valid_name(name)
    content = await request.body()
    if len(content) > parts.settings.max_input_bytes:
        raise Problem(413, "Request too large", "The input file is over the limit.")
    input_id = uuid.uuid4().hex
    try:
        meta = await parts.sync.put_input(tenant.id, input_id, filename, content)
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    doc = await parts.inputs.record(tenant.id, meta)
    response.headers["Location"] = f"{UPLOAD_PATH}/{input_id}"
    return InputView.of(doc)


@router.get("/inputs/{input_id}", response_model=InputView)
async def get_input(input_id: str, tenant: TenantDep, parts: GatewayDep) -> InputView:
    """An input file's metadata."""
    doc = await parts.inputs.get(tenant.id, input_id)
    if doc is None:
        raise input_not_found(input_id)
    return InputView.of(doc)


@router.delete("/inputs/{input_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(503))
async def delete_input(input_id: str, tenant: TenantDep, parts: GatewayDep) -> Response:
    """Delete an input file; sessions it is attached to keep their copy until detached."""
    if not await parts.inputs.delete(tenant.id, input_id):
        raise input_not_found(input_id)
    try:
        await parts.sync.delete_input(tenant.id, input_id)
    except SyncUnavailable as exc:
        raise _sync_down(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _ready_session(parts: Gateway, tenant_id: str, session_id: str) -> Document:
    doc = await parts.sessions.get(tenant_id, session_id)
    if doc is None:
        raise session_not_found(session_id)
    if doc["status"] != "ready":
        raise Problem(
            409,
            "Session not ready",
            f"The session is {doc['status']}: attach input files when creating it, "
            "or once it is ready.",
            kind="session-not-ready",
        )
    return doc


@router.put(
    "/sessions/{session_id}/inputs/{input_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(409),
)
async def attach_input(
    session_id: str, input_id: str, tenant: TenantDep, parts: GatewayDep
) -> Response:
    """Attach an input file to a ready session (idempotent); it appears in inputs/."""
    doc = await _ready_session(parts, tenant.id, session_id)
    (item,) = await resolve(parts, tenant.id, [input_id])
    attached: list[dict[str, Any]] = doc.get("inputs", [])
    if all(raw["id"] != item.id for raw in attached):
        if len(attached) >= MAX_INPUTS:
            raise Problem(409, "Too many input files", f"A session holds at most {MAX_INPUTS}.")
        check_names([*await user_inputs(parts, doc["hub_user"]), item])
        attached = [*attached, item.model_dump()]
    await _change(parts, doc, attached, "input.attached", item)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/sessions/{session_id}/inputs/{input_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(409),
)
async def detach_input(
    session_id: str, input_id: str, tenant: TenantDep, parts: GatewayDep
) -> Response:
    """Detach an input file from a ready session (idempotent); it leaves inputs/."""
    doc = await _ready_session(parts, tenant.id, session_id)
    attached = [InputFile.model_validate(raw) for raw in doc.get("inputs", [])]
    detached = next((item for item in attached if item.id == input_id), None)
    kept = [item.model_dump() for item in attached if item.id != input_id]
    await _change(parts, doc, kept, "input.detached", detached)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _change(
    parts: Gateway,
    session: Document,
    inputs: list[dict[str, Any]],
    kind: AuditKind,
    item: InputFile | None,
) -> None:
    """Set the session's inputs; tell sync the user's inputs/ and the audit trail what changed.

    One write holds the change and its events (the outbox), then they are published.
    """
    entries = inputs_entry(session["tenant_id"], session["hub_user"]) | _audit_entry(
        session, kind, item
    )
    session_id = session["_id"]
    hold, _ = await record(
        parts,
        SessionStore.COLLECTION,
        session_id,
        entries,
        lambda: parts.sessions.set_inputs(session_id, inputs, entries),
    )
    await parts.outbox.deliver(SessionStore.COLLECTION, session_id, entries, hold)


def _audit_entry(session: Document, kind: AuditKind, item: InputFile | None) -> Entries:
    """The audit event of an attach or detach, as an outbox entry (none for a no-op detach)."""
    if item is not None:
        fact = AuditRecorded(
            tenant_id=session["tenant_id"],
            kind=kind,
            hub_user=session["hub_user"],
            user_id=session["host_user_id"],
            session_id=session["_id"],
            reported_by="nbembed",
            detail=audit.input_detail(item),
        )
        return event_entry(audit.event(fact))
    return {}
