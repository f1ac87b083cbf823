"""The gateway's session API (v1): what host-app backends call to open notebooks."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas import (
    CloudEvent,
    EndCode,
    InputFile,
    Profile,
    SessionEnded,
    SessionRequested,
    hub_username,
)
from schemas.events import MAX_INPUTS
from services.gateway.attachments import check_names, inputs_entry, resolve, user_inputs
from services.gateway.deps import (
    SESSION_TOKEN_PREFIX,
    CallerDep,
    Gateway,
    GatewayDep,
    TenantDep,
    resolve_session_caller,
    session_token_digest,
)
from services.gateway.outbox import Entries, Hold, event_entry
from services.gateway.problems import Problem, errors
from services.gateway.store import SESSION_FINAL, Document, SessionStatus, SessionStore
from services.gateway.tenants import Tenant

SOURCE = "/nbembed/gateway"
IDEMPOTENCY_NAMESPACE = uuid.UUID("0b7e3c52-61a4-4c1e-9a43-1f0e2d9c8a77")
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
"""Visible ASCII, spaces only inside: control characters, CR/LF (which could split a
header where a proxy lets them through) and non-ASCII bytes are refused with 422."""

router = APIRouter(prefix="/v1", tags=["sessions"])

NotebookId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
NotebookName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
T = TypeVar("T")


async def record(
    parts: Gateway,
    collection: str,
    record_id: str,
    entries: Entries,
    write: Callable[[], Awaitable[T]],
) -> tuple[Hold, T]:
    """Write a record with its outbox ``entries``, and its relay marker beside it.

    Refused (503, nothing written) while Kafka is known to be down. Returns the
    marker's hold and what ``write`` returned; then `Outbox.deliver` the entries.
    """
    parts.outbox.kafka.check()
    hold, written = await asyncio.gather(parts.outbox.hold(collection, record_id, entries), write())
    return hold, written


def pending(hold: Hold, before: Document | None, new: Entries) -> Entries:
    """What a write must publish: entries of earlier writes still owed, then ``new``."""
    return {**hold.pick((before or {}).get("outbox") or {}), **new}


class SessionCreate(BaseModel):
    """Open a notebook for one of the host's users."""

    model_config = ConfigDict(
        extra="forbid",
        # JSON types as the schema says them: 0 is no boolean, 1 no string.
        strict=True,
        # The validator below, said in JSON Schema so the OpenAPI is the whole rule.
        json_schema_extra={
            "not": {
                "required": ["notebook_id", "notebook_name"],
                "properties": {
                    "notebook_id": {"type": "string"},
                    "notebook_name": {"type": "string"},
                },
            }
        },
    )

    user_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="The host app's own id for the user (any string)."
    )
    notebook_id: NotebookId | None = Field(default=None, description="A stored notebook to open.")
    notebook_name: NotebookName | None = Field(
        default=None, description="Name of a new notebook (when notebook_id is absent)."
    )
    inputs: list[NotebookId] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="Ids of uploaded input files (POST /v1/inputs) to place read-only in "
        "the user's inputs/ folder before the session is ready.",
    )
    restricted: bool | None = Field(
        default=None,
        description="true: open this session in restricted-data mode even if the tenant is "
        "not restricted. A session can only be stricter than its tenant: false for a "
        "restricted tenant is refused (422). Omitted: the tenant's setting.",
    )
    profile: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        default=None,
        description="One of the tenant's profiles (the environment: kernel, resources); "
        "omitted: the tenant's default. A name the tenant does not declare is refused (422).",
    )

    @model_validator(mode="after")
    def _one_notebook(self) -> SessionCreate:
        if self.notebook_id is not None and self.notebook_name is not None:
            raise ValueError(
                "give notebook_id (open a stored notebook) or notebook_name (a new one), not both"
            )
        return self


class Failure(BaseModel):
    """Why something did not happen, for a host developer."""

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
    restricted: bool = Field(
        default=False,
        description="Restricted-data mode: every download and export route of the user's "
        "server answers 403 and the page offers none. Give it to the SDK's mount().",
    )
    iframe_url: str | None = Field(
        default=None,
        description="When ready: the URL to set as the iframe's src. It logs the browser in "
        "as this user once and expires within a minute; ask again for a fresh one.",
    )
    notebook_origin: str | None = Field(
        default=None,
        description="When ready: the origin the notebook is served from, the only one the "
        "host page should talk to in the iframe (the SDK's notebookOrigin). With per-user "
        "origins it is the user's own (the iframe URL, the hub's, redirects there).",
    )
    browser_token: str | None = Field(
        default=None,
        description="Only in the answer that created the session: a token the host page's "
        "SDK uses for this session's saves (and nothing else).",
    )
    inputs: list[InputFile] = Field(
        default_factory=list, description="Input files attached, in the user's inputs/ folder."
    )
    profile: Profile | None = Field(
        default=None,
        description="The profile the session runs with (None: the tenant declares none).",
    )
    restore_id: str = Field(
        default="",
        description="While ready: changes (an opaque id) every time a restore (POST "
        "/v1/notebooks/{id}/revisions/{n}/restore) rewrote this session's notebook file; "
        "empty when none did. The SDK follows it and reloads the page's notebook itself; to "
        "be woken by the next one, GET this session with wait, status=ready and "
        "restore_id=<this id>.",
    )
    restored_revision: int | None = Field(
        default=None, description="While ready: the revision the last of those restores wrote."
    )
    failure: Failure | None = None
    end_reason: str | None = Field(
        default=None,
        description="When ended: why, for a host developer (ended by the host, notebook "
        "deleted, the user's server culled, stopped or crashed).",
    )
    end_code: EndCode | None = Field(
        default=None,
        description="When ended: why, for the host's code. ended-by-host (DELETE), "
        "notebook-deleted, server-culled (idle), server-stopped (an admin or JupyterHub), "
        "server-crashed. After server-*, the notebook is no longer reachable: open it again "
        "in a new session (POST /v1/sessions with its notebook_id); its saved revisions stay.",
    )
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]

    @classmethod
    async def of(cls, doc: Document, parts: Gateway, *, login: bool = True) -> SessionView:
        """The host's view of a session; a ready one gets a fresh single-use iframe URL
        (unless ``login`` is False: the view for a browser token, which logs nobody in)."""
        iframe_url = notebook_origin = None
        if login and doc["status"] == "ready" and doc.get("page_url"):
            iframe_url = parts.tickets.login_url(doc["hub_user"], doc["page_url"], doc["_id"])
            notebook_origin = parts.tickets.notebook_origin(doc["hub_user"])
        restore_id, restored_revision = "", None
        if doc["status"] == "ready":
            restore_id, restored_revision = await parts.restores.get(doc["_id"])
        failure = None
        if doc.get("failure_code"):
            failure = Failure(code=doc["failure_code"], reason=doc.get("failure_reason", ""))
        return cls(
            id=doc["_id"],
            status=doc["status"],
            user_id=doc["host_user_id"],
            notebook_id=doc.get("notebook_id"),
            notebook_name=doc.get("notebook_name"),
            path=doc.get("path"),
            inputs=doc.get("inputs", []),
            restricted=bool(doc.get("restricted", False)),
            profile=doc.get("profile"),
            restore_id=restore_id,
            restored_revision=restored_revision,
            iframe_url=iframe_url,
            notebook_origin=notebook_origin,
            failure=failure,
            end_reason=doc.get("end_reason") if doc["status"] == "ended" else None,
            end_code=doc.get("end_code") if doc["status"] == "ended" else None,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            links={
                "self": f"/v1/sessions/{doc['_id']}",
                "events": f"/v1/sessions/{doc['_id']}/events",
                "saves": f"/v1/sessions/{doc['_id']}/saves",
            },
        )


def effective_mode(tenant: Tenant, asked: bool | None) -> bool:
    """Whether a session runs restricted: the tenant's setting, or stricter if asked.

    Asking for an unrestricted session on a restricted tenant is refused rather
    than ignored, so a host never believes it got a mode it did not get.
    """
    if tenant.restricted and asked is False:
        raise Problem(
            422,
            "Restricted mode cannot be weakened",
            f"Tenant {tenant.id} is restricted: its sessions cannot ask for restricted=false.",
            kind="restricted-mode-weakened",
        )
    return tenant.restricted or asked is True


def _profile_name(doc: Document, tenant: Tenant) -> str | None:
    """The profile a recorded session was asked with, for comparing a retry with it.

    A record written before sessions had profiles (an upgrade while a host
    retries) was made with what is now the tenant's default.
    """
    if "profile" not in doc:
        default = tenant.profile(None)
        return default.name if default else None
    return (doc["profile"] or {}).get("name")


def resolve_profile(tenant: Tenant, name: str | None) -> Profile | None:
    """The tenant's profile ``name`` (its default when None); 422 when it has no such profile.

    Only this tenant's own profiles are looked at: another tenant's profile
    name is refused like a made-up one, and nothing of the request but the
    name reaches the spawner.
    """
    try:
        return tenant.profile(name)
    except KeyError:
        known = ", ".join(p.name for p in tenant.profiles) or "none"
        raise Problem(
            422,
            "Unknown profile",
            f"Tenant {tenant.id} has no profile {name!r} (its profiles: {known}).",
            kind="unknown-profile",
        ) from None


def session_not_found(session_id: str) -> Problem:
    """The answer for a session that does not exist for the caller."""
    return Problem(
        404, "Not found", f"No session {session_id} for this tenant.", kind="session-not-found"
    )


@router.post(
    "/sessions",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SessionView,
    responses=errors(404, 409),
)
async def create_session(
    body: SessionCreate,
    tenant: TenantDep,
    parts: GatewayDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Any 1-200 visible ASCII characters (spaces only inside), e.g. a "
            "UUID: the same key with the same body answers the same session.",
        ),
    ] = None,
) -> SessionView:
    """Ask for a notebook session; poll or stream its status from the returned links.

    With an ``Idempotency-Key`` header, repeating the request returns the first
    session instead of opening another (without its browser token, which only
    the first answer carries).
    """
    # The request's own rules first (no store read): a refused profile or mode is
    # refused whatever the notebook.
    restricted = effective_mode(tenant, body.restricted)
    profile = resolve_profile(tenant, body.profile)
    if body.notebook_id is not None and not await parts.notebooks.get(tenant.id, body.notebook_id):
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
    browser_token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(24)
    hub_user = hub_username(tenant.id, body.user_id)
    inputs = await resolve(parts, tenant.id, body.inputs)
    if inputs:
        check_names([*await user_inputs(parts, hub_user), *inputs])
    requested = SessionRequested(
        session_id=session_id,
        tenant_id=tenant.id,
        hub_user=hub_user,
        host_user_id=body.user_id,
        notebook_id=body.notebook_id,
        notebook_name=body.notebook_name,
        inputs=inputs,
        restricted=restricted,
        profile=profile,
    )
    entries = event_entry(CloudEvent.wrap(requested, source=SOURCE, subject=session_id))
    hold, (doc, created) = await record(
        parts,
        SessionStore.COLLECTION,
        session_id,
        entries,
        lambda: parts.sessions.create(
            {
                "_id": session_id,
                "tenant_id": tenant.id,
                "host_user_id": body.user_id,
                "hub_user": hub_user,
                "notebook_id": body.notebook_id,
                "notebook_name": body.notebook_name,
                "inputs": [item.model_dump() for item in inputs],
                "restricted": restricted,
                "profile": profile.model_dump() if profile else None,
                "browser_token_sha256": session_token_digest(browser_token),
                "outbox": entries,
            }
        ),
    )
    if not created and (
        doc["host_user_id"],
        doc["notebook_id"],
        doc["notebook_name"],
        doc.get("restricted", False),
        _profile_name(doc, tenant),
    ) != (
        body.user_id,
        body.notebook_id,
        body.notebook_name,
        restricted,
        profile.name if profile else None,
    ):
        raise Problem(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was already used for a different request.",
            kind="idempotency-key-reused",
        )
    # A retry completes what the first attempt may have left owed (it crashed, or
    # Kafka failed it): what its marker lists, or everything while the session has
    # not moved (that marker may never have been written). Same events, same ids.
    owed: Entries = doc.get("outbox") or {}
    left = entries if created else owed if doc["status"] == "requested" else hold.pick(owed)
    if left:
        # Before the request travels: every later fact about this hub user (its
        # server's reports included) can then be attributed to the host's user.
        await parts.audit_users.remember(hub_user, tenant.id, body.user_id)
    await parts.outbox.deliver(SessionStore.COLLECTION, session_id, left, hold)
    response.headers["Location"] = f"/v1/sessions/{doc['_id']}"
    view = await SessionView.of(doc, parts)
    if created:
        view.browser_token = browser_token
    return view


@router.get("/sessions/{session_id}", response_model=SessionView)
async def get_session(
    session_id: str,
    caller: CallerDep,
    parts: GatewayDep,
    wait: Annotated[
        float,
        Query(ge=0, description="Long-poll: wait up to this many seconds for a change of status."),
    ] = 0,
    status_: Annotated[
        SessionStatus | None,
        Query(
            alias="status",
            description="With wait: the status you already know (status=ready waits for the "
            "session to end).",
        ),
    ] = None,
    restore_id: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=r"^[0-9a-f]*$",
            description="With wait and status=ready: the session's restore_id you already "
            "know (empty: none); the answer also comes when a restore rewrites its file.",
        ),
    ] = None,
) -> SessionView:
    """The session's status; with ``wait`` the answer comes as soon as it changes.

    Callable with the tenant's API key, or with the session's browser token:
    the SDK follows its session this way to tell the page when it ended (its
    server culled, say). A browser token gets no ``iframe_url`` and no
    ``notebook_origin``: it never logs anyone in.
    """
    caller = await resolve_session_caller(parts, caller, session_id)
    doc = await parts.sessions.get(caller.tenant_id, session_id)
    if doc is None or not caller.may_use(session_id):
        raise session_not_found(session_id)
    timeout = min(wait, parts.settings.max_wait_seconds)
    # A ready session is waited on only when the caller says it knows it is ready
    # (status=ready): that is how to learn when it ends.
    if timeout > 0 and (
        doc["status"] not in SESSION_FINAL or (doc["status"] == "ready" and status_ == "ready")
    ):
        known = status_ or doc["status"]

        async def restored() -> bool:
            return (
                restore_id is not None and (await parts.restores.get(session_id))[0] != restore_id
            )

        doc = (
            await parts.sessions.wait_for_change(
                caller.tenant_id, session_id, known, timeout, news=restored
            )
            or doc
        )
    return await SessionView.of(doc, parts, login=caller.session_id is None)


@router.get(
    "/sessions/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "A text/event-stream of `status` events (data: the session as "
            "JSON) and keep-alive comments, until a final status.",
            # OpenAPI 3.1: the schema of a text/event-stream describes each event.
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"const": "status"},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": {"$ref": "#/components/schemas/SessionView"},
                            },
                        },
                    }
                }
            },
        }
    },
)
async def stream_session(
    session_id: str, tenant: TenantDep, parts: GatewayDep, request: Request
) -> StreamingResponse:
    """Server-sent events: one ``status`` event per change, ending at a final status."""
    doc = await parts.sessions.get(tenant.id, session_id)
    if doc is None:
        raise session_not_found(session_id)

    async def events() -> AsyncIterator[str]:
        current: Document | None = doc
        while current is not None:
            view = await SessionView.of(current, parts)
            yield f"event: status\ndata: {view.model_dump_json()}\n\n"
            if current["status"] in SESSION_FINAL or await request.is_disconnected():
                return
            nxt = await parts.sessions.wait_for_change(tenant.id, session_id, current["status"], 15)
            if nxt is not None and nxt["status"] == current["status"]:
                yield ": keep-alive\n\n"
            current = nxt

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_session(session_id: str, tenant: TenantDep, parts: GatewayDep) -> Response:
    """End the session (idempotent); its server stops when the user has no other session."""
    doc = await parts.sessions.get(tenant.id, session_id)
    if doc is None:
        raise session_not_found(session_id)
    await end(parts, doc, reason="ended by the host", code="ended-by-host")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def end(parts: Gateway, doc: Document, *, reason: str, code: EndCode) -> None:
    """End a session once: record why, stop storing its file's saves, tell the provisioner.

    The end and its events are one write (the outbox): a crash or a Kafka
    failure after it leaves them to the relay, never a session ended for the
    host but open for the provisioner.
    """
    if doc.get("path"):
        await parts.open_files.release(doc["hub_user"], doc["path"], doc["_id"])
    ended = SessionEnded(
        session_id=doc["_id"], tenant_id=doc["tenant_id"], hub_user=doc["hub_user"]
    )
    entries = event_entry(CloudEvent.wrap(ended, source=SOURCE, subject=doc["_id"]))
    if doc.get("inputs"):
        # The user's inputs/ folder loses this session's files (those no other open
        # session has); with no session left the server stops and sync skips it.
        entries |= inputs_entry(doc["tenant_id"], doc["hub_user"])
    hold, before = await record(
        parts,
        SessionStore.COLLECTION,
        doc["_id"],
        entries,
        lambda: parts.sessions.end(doc["_id"], reason, code, entries),
    )
    if before is None:  # ended before: its events are the first end's, if still owed
        owed = hold.pick(doc.get("outbox") or {})
        await parts.outbox.deliver(SessionStore.COLLECTION, doc["_id"], owed, hold)
        return
    await parts.outbox.deliver(
        SessionStore.COLLECTION, doc["_id"], pending(hold, before, entries), hold
    )
