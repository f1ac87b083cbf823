"""The gateway's HTTP API v1: what host-app backends call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas import CloudEvent, NotebookSaved, SessionEnded, SessionRequested, hub_username
from services.common.kafka import publish_event
from services.gateway.problems import Problem
from services.gateway.store import (
    SESSION_FINAL,
    Document,
    NotebookView,
    SaveStatus,
    SaveStore,
    SessionStatus,
    SessionStore,
)
from services.gateway.tenants import Tenant, TenantRegistry
from services.gateway.tickets import TicketIssuer

SOURCE = "/nbembed/gateway"
IDEMPOTENCY_NAMESPACE = uuid.UUID("0b7e3c52-61a4-4c1e-9a43-1f0e2d9c8a77")

router = APIRouter(prefix="/v1")
bearer = HTTPBearer(auto_error=False, description="The tenant's API key.")


def _store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def _tickets(request: Request) -> TicketIssuer:
    tickets: TicketIssuer = request.app.state.tickets
    return tickets


def _broker(request: Request) -> KafkaBroker:
    broker: KafkaBroker = request.app.state.broker
    return broker


async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant whose API key is in ``Authorization: Bearer``; 401 otherwise."""
    registry: TenantRegistry = request.app.state.tenants
    tenant = registry.authenticate(credentials.credentials) if credentials else None
    if tenant is None:
        problem = Problem(
            401, "Unauthorized", "A valid tenant API key is required (Authorization: Bearer <key>)."
        )
        problem.headers["WWW-Authenticate"] = "Bearer"
        raise problem
    return tenant


def _saves(request: Request) -> SaveStore:
    saves: SaveStore = request.app.state.saves
    return saves


def _notebooks(request: Request) -> NotebookView:
    notebooks: NotebookView = request.app.state.notebooks
    return notebooks


TenantDep = Annotated[Tenant, Depends(current_tenant)]
StoreDep = Annotated[SessionStore, Depends(_store)]
SavesDep = Annotated[SaveStore, Depends(_saves)]

NotebookId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


class SessionCreate(BaseModel):
    """Open a notebook for one of the host's users."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="The host app's own id for the user (any string)."
    )
    notebook_id: NotebookId | None = Field(default=None, description="A stored notebook to open.")
    notebook_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Name of a new notebook (when notebook_id is absent)."
    )

    @model_validator(mode="after")
    def _one_notebook(self) -> SessionCreate:
        if self.notebook_id is not None and self.notebook_name is not None:
            raise ValueError(
                "give notebook_id (open a stored notebook) or notebook_name (a new one), not both"
            )
        return self


class SessionFailure(BaseModel):
    code: str
    reason: str


class SessionView(BaseModel):
    """A session as the host sees it."""

    id: str
    status: SessionStatus
    user_id: str
    notebook_id: str | None
    notebook_name: str | None
    path: str | None = None
    iframe_url: str | None = Field(
        default=None,
        description="When ready: the URL to set as the iframe's src. It logs the browser in "
        "as this user once and expires within a minute; ask again for a fresh one.",
    )
    failure: SessionFailure | None = None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]

    @classmethod
    async def of(cls, doc: Document, tickets: TicketIssuer) -> SessionView:
        """The host's view of a session; a ready one gets a fresh single-use iframe URL."""
        iframe_url = None
        if doc["status"] == "ready" and doc.get("page_url"):
            iframe_url = await tickets.login_url(doc["hub_user"], doc["page_url"])
        failure = None
        if doc.get("failure_code"):
            failure = SessionFailure(code=doc["failure_code"], reason=doc.get("failure_reason", ""))
        return cls(
            id=doc["_id"],
            status=doc["status"],
            user_id=doc["host_user_id"],
            notebook_id=doc.get("notebook_id"),
            notebook_name=doc.get("notebook_name"),
            path=doc.get("path"),
            iframe_url=iframe_url,
            failure=failure,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            links={
                "self": f"/v1/sessions/{doc['_id']}",
                "events": f"/v1/sessions/{doc['_id']}/events",
            },
        )


def _not_found(session_id: str) -> Problem:
    return Problem(
        404, "Not found", f"No session {session_id} for this tenant.", kind="session-not-found"
    )


@router.post("/sessions", status_code=status.HTTP_202_ACCEPTED, response_model=SessionView)
async def create_session(
    body: SessionCreate,
    tenant: TenantDep,
    store: StoreDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> SessionView:
    """Ask for a notebook session; poll or stream its status from the returned links.

    With an ``Idempotency-Key`` header, repeating the request returns the first
    session instead of opening another.
    """
    notebooks = _notebooks(request)
    if body.notebook_id is not None and await notebooks.get(tenant.id, body.notebook_id) is None:
        raise Problem(
            404,
            "Not found",
            f"No notebook {body.notebook_id} for this tenant.",
            kind="notebook-not-found",
        )
    # With an Idempotency-Key the session id derives from it: a retry finds the
    # first session by id (the only kind of lookup FerretDB serves fast).
    session_id = (
        uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant.id}:{idempotency_key}").hex
        if idempotency_key
        else uuid.uuid4().hex
    )
    hub_user = hub_username(tenant.id, body.user_id)
    doc, created = await store.create(
        {
            "_id": session_id,
            "tenant_id": tenant.id,
            "host_user_id": body.user_id,
            "hub_user": hub_user,
            "notebook_id": body.notebook_id,
            "notebook_name": body.notebook_name,
        }
    )
    if not created and (doc["host_user_id"], doc["notebook_id"], doc["notebook_name"]) != (
        body.user_id,
        body.notebook_id,
        body.notebook_name,
    ):
        raise Problem(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was already used for a different request.",
            kind="idempotency-key-reused",
        )
    if created:
        requested = SessionRequested(
            session_id=session_id,
            tenant_id=tenant.id,
            hub_user=hub_user,
            host_user_id=body.user_id,
            notebook_id=body.notebook_id,
            notebook_name=body.notebook_name,
        )
        await publish_event(
            _broker(request), CloudEvent.wrap(requested, source=SOURCE, subject=session_id)
        )
    response.headers["Location"] = f"/v1/sessions/{doc['_id']}"
    return await SessionView.of(doc, _tickets(request))


@router.get("/sessions/{session_id}", response_model=SessionView)
async def get_session(
    session_id: str,
    tenant: TenantDep,
    store: StoreDep,
    request: Request,
    wait: Annotated[
        float,
        Query(ge=0, description="Long-poll: wait up to this many seconds for a change of status."),
    ] = 0,
    status_: Annotated[
        SessionStatus | None,
        Query(alias="status", description="With wait: the status you already know."),
    ] = None,
) -> SessionView:
    """The session's status; with ``wait`` the answer comes as soon as it changes."""
    doc = await store.get(tenant.id, session_id)
    if doc is None:
        raise _not_found(session_id)
    timeout = min(wait, request.app.state.settings.max_wait_seconds)
    if timeout > 0 and doc["status"] not in SESSION_FINAL:
        known = status_ or doc["status"]
        doc = await store.wait_for_change(tenant.id, session_id, known, timeout) or doc
    return await SessionView.of(doc, _tickets(request))


@router.get(
    "/sessions/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_session(
    session_id: str, tenant: TenantDep, store: StoreDep, request: Request
) -> StreamingResponse:
    """Server-sent events: one ``status`` event per change, ending at a final status."""
    doc = await store.get(tenant.id, session_id)
    if doc is None:
        raise _not_found(session_id)

    async def events() -> AsyncIterator[str]:
        current: Document | None = doc
        while current is not None:
            view = await SessionView.of(current, _tickets(request))
            yield f"event: status\ndata: {view.model_dump_json()}\n\n"
            if current["status"] in SESSION_FINAL or await request.is_disconnected():
                return
            nxt = await store.wait_for_change(tenant.id, session_id, current["status"], 15)
            if nxt is not None and nxt["status"] == current["status"]:
                yield ": keep-alive\n\n"
            current = nxt

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_session(
    session_id: str, tenant: TenantDep, store: StoreDep, request: Request
) -> Response:
    """End the session (idempotent); its server stops when the user has no other session."""
    doc = await store.get(tenant.id, session_id)
    if doc is None:
        raise _not_found(session_id)
    if await store.advance(session_id, "ended"):
        ended = SessionEnded(session_id=session_id, tenant_id=tenant.id, hub_user=doc["hub_user"])
        await publish_event(
            _broker(request), CloudEvent.wrap(ended, source=SOURCE, subject=session_id)
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class SaveView(BaseModel):
    """A save as the host sees it: pending until the revision is durable."""

    id: str
    session_id: str | None
    notebook_id: str
    status: SaveStatus
    revision: int | None = None
    changed: bool | None = None
    failure: SessionFailure | None = None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, doc: Document) -> SaveView:
        failure = None
        if doc.get("failure_code"):
            failure = SessionFailure(code=doc["failure_code"], reason=doc.get("failure_reason", ""))
        return cls(
            id=doc["_id"],
            session_id=doc.get("session_id"),
            notebook_id=doc["notebook_id"],
            status=doc["status"],
            revision=doc.get("revision"),
            changed=doc.get("changed"),
            failure=failure,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            links={"self": f"/v1/saves/{doc['_id']}"},
        )


@router.post(
    "/sessions/{session_id}/saves", status_code=status.HTTP_202_ACCEPTED, response_model=SaveView
)
async def request_save(
    session_id: str,
    tenant: TenantDep,
    store: StoreDep,
    saves: SavesDep,
    request: Request,
    response: Response,
) -> SaveView:
    """Store the session's notebook, as last saved in Jupyter, as a new revision.

    The host page's SDK calls this once Jupyter has saved; poll the returned
    link (long-poll with ``wait``) until the status is ``stored``.
    """
    session = await store.get(tenant.id, session_id)
    if session is None:
        raise _not_found(session_id)
    if session["status"] != "ready":
        raise Problem(
            409,
            "Conflict",
            f"Session {session_id} is {session['status']}; only a ready session can save.",
            kind="session-not-ready",
        )
    save = await saves.create(
        {
            "_id": uuid.uuid4().hex,
            "tenant_id": tenant.id,
            "session_id": session_id,
            "notebook_id": session["notebook_id"],
        }
    )
    saved = NotebookSaved(
        save_id=save["_id"],
        tenant_id=tenant.id,
        notebook_id=session["notebook_id"],
        hub_user=session["hub_user"],
        path=session["path"],
        origin="host",
    )
    await publish_event(_broker(request), CloudEvent.wrap(saved, source=SOURCE, subject=session_id))
    response.headers["Location"] = f"/v1/saves/{save['_id']}"
    return SaveView.of(save)


@router.get("/saves/{save_id}", response_model=SaveView)
async def get_save(
    save_id: str,
    tenant: TenantDep,
    saves: SavesDep,
    request: Request,
    wait: Annotated[
        float, Query(ge=0, description="Long-poll: wait up to this many seconds for the outcome.")
    ] = 0,
) -> SaveView:
    """A save's status; with ``wait`` the answer comes as soon as it is stored or failed."""
    doc = await saves.get(tenant.id, save_id)
    if doc is None:
        raise Problem(
            404, "Not found", f"No save {save_id} for this tenant.", kind="save-not-found"
        )
    timeout = min(wait, request.app.state.settings.max_wait_seconds)
    if timeout > 0 and doc["status"] == "pending":
        doc = await saves.wait_for_change(tenant.id, save_id, "pending", timeout) or doc
    return SaveView.of(doc)
