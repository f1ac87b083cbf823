"""Endpoints for nbembed's own parts, not for host apps."""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from schemas import AuditDetail, AuditRecorded, CloudEvent, NotebookSaved, ServerReportedKind
from schemas.login_ticket import REDEEM_PATH, RedeemRequest, Redemption
from schemas.naming import tenant_of
from services.gateway import audit
from services.gateway.api import SOURCE
from services.gateway.deps import Gateway, GatewayDep
from services.gateway.hub_identity import HubIdentity
from services.gateway.problems import Problem, errors
from services.gateway.rate_limit import Verdict
from services.gateway.saves_api import FileTimestamp, jupyter_save_id, record_save
from services.gateway.store import Document
from services.gateway.tickets import TicketRefused

router = APIRouter(prefix="/internal", tags=["internal"])
"""Documented beside the host API (every status it sends is in the OpenAPI), but only
nbembed's own parts can call it: users' servers with their hub token, the hub's login
handler with its own."""
log = logging.getLogger(__name__)


class ServerSave(BaseModel):
    """A save a single-user server made itself (autosave, Ctrl-S, the bridge)."""

    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    last_modified: FileTimestamp | None = None
    """The file's timestamp after the save (the model Jupyter answered): names the save,
    so the SDK finds it and a retried report is the same save. Older hooks send none."""


class AuditReport(BaseModel):
    """A fact only the user's own server sees (a kernel started, a download refused).

    It names no user or tenant: those come from the token that sends it.
    """

    model_config = ConfigDict(extra="forbid")

    kind: ServerReportedKind
    detail: AuditDetail = {}
    report_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None
    """The reporter's own id for the report: its retries are one record."""


async def _server_user(request: Request, authorization: str) -> str:
    """The hub user whose server token this is (asked of the hub); 401 otherwise."""
    identity: HubIdentity = request.app.state.hub_identity
    scheme, _, token = authorization.partition(" ")
    hub_user = await identity.user_of(token) if scheme.lower() == "token" and token else None
    if hub_user is None:
        raise Problem(401, "Unauthorized", "A single-user server's hub API token is required.")
    return hub_user


async def _saved_by(parts: Gateway, open_file: Document) -> tuple[str | None, bool]:
    """Who is behind a server's save (the host user of a session that has the file open),
    and whether its data is restricted (any such session restricted: the server then is)."""
    author, restricted = None, False
    for session_id in open_file.get("sessions", {}):
        session = await parts.sessions.get_any(session_id)
        if session is not None:
            author = author or str(session["host_user_id"])
            restricted = restricted or bool(session.get("restricted"))
    return author, restricted


@router.post(
    "/server-saves",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=errors(404),
)
async def server_saved(
    body: ServerSave,
    request: Request,
    parts: GatewayDep,
    authorization: Annotated[str, Header()] = "",
) -> Response:
    """Record a save reported by a server's post-save hook, authenticated by the hub.

    Files nbembed did not put on that server, or whose sessions have all
    ended, are refused (404): nothing outside an open session is stored.
    """
    hub_user = await _server_user(request, authorization)
    known = await parts.open_files.get(hub_user, body.path)
    if known is None:
        raise Problem(
            404,
            "Not found",
            "No open nbembed session has this file on your server; the save is not stored.",
            kind="file-not-open",
        )
    author, restricted = await _saved_by(parts, known)
    saved = NotebookSaved(
        save_id=jupyter_save_id(hub_user, body.path, body.last_modified)
        if body.last_modified
        else uuid.uuid4().hex,
        tenant_id=known["tenant_id"],
        notebook_id=known["notebook_id"],
        hub_user=hub_user,
        path=body.path,
        origin="server",
        author=author,
        restricted=restricted,
    )
    # Recorded with its event, so the audit trail knows whose save it was.
    await record_save(parts, {"session_id": None}, CloudEvent.wrap(saved, source=SOURCE))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/audit-reports",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=errors(404, 429),
)
async def server_audit_report(
    body: AuditReport,
    request: Request,
    parts: GatewayDep,
    authorization: Annotated[str, Header()] = "",
) -> Response:
    """Record a fact a user's server reports, as that user's, authenticated by the hub.

    Reports are untrusted (the server runs the user's code): the kind is one of
    a fixed few, the detail is bounded, the user and tenant are the token's, and
    each user's reports are rate-limited (429 with Retry-After; the first
    refusal of a burst leaves one ``reports.throttled`` record).
    """
    hub_user = await _server_user(request, authorization)
    # Throttled before any store read: a flood costs a dictionary lookup per report.
    verdict = parts.audit_reports.check(hub_user)
    if verdict is Verdict.REFUSED:
        raise _throttled(parts, hub_user)
    known = await parts.audit_users.get(hub_user)
    if known is None:
        raise Problem(404, "Not found", "This hub user is no nbembed user.", kind="user-not-found")
    if verdict is Verdict.FIRST_REFUSAL:  # the first refusal of a burst is recorded, once
        await _record(parts, known, hub_user, "reports.throttled", {"kind": body.kind}, None)
        raise _throttled(parts, hub_user)
    await _record(parts, known, hub_user, body.kind, body.detail, body.report_id)
    return Response(status_code=status.HTTP_202_ACCEPTED)


def _throttled(parts: Gateway, hub_user: str) -> Problem:
    problem = Problem(
        429, "Too many requests", "Too many audit reports from this server; retry later."
    )
    problem.headers["Retry-After"] = str(max(1, round(parts.audit_reports.retry_after(hub_user))))
    return problem


async def _record(
    parts: Gateway,
    known: dict[str, str],
    hub_user: str,
    kind: str,
    detail: dict[str, str],
    report_id: str | None,
) -> None:
    record = AuditRecorded.model_validate(
        {
            "tenant_id": known["tenant_id"],
            "kind": kind,
            "hub_user": hub_user,
            "user_id": known["user_id"],
            "reported_by": "server" if kind != "reports.throttled" else "nbembed",
            "detail": detail,
        }
    )
    # A retried report (same report_id) is one record; ids are per user, so one
    # user's report ids can never collide with another's records.
    event_id = audit.audit_id(kind, f"{hub_user}:{report_id}") if report_id else None
    await audit.publish(parts.broker, record, event_id=event_id)


@router.post(
    REDEEM_PATH.removeprefix("/internal"), response_model=Redemption, responses=errors(403, 410)
)
async def redeem_ticket(
    body: RedeemRequest, parts: GatewayDep, authorization: Annotated[str, Header()] = ""
) -> Redemption:
    """Use a login ticket, for the hub's login handler only: whom to log in, and where to.

    403 for a ticket this gateway did not sign (or tampered with), 410 for one
    that expired, was used, or whose session has ended; a 410 says which in
    ``code`` (``ticket-expired``, ``ticket-used``, ``ended``) with the tenant's
    ``frame_ancestors``, for the hub's refusal page. The ticket is never logged.
    """
    _require_hub(parts, authorization, "Only the hub's login handler redeems tickets.")
    try:
        redemption = await parts.tickets.redeem(body.ticket, parts.sessions)
    except TicketRefused as refused:
        log.info("refused a login ticket: %s", refused.reason)
        kind = "ticket-invalid" if refused.status == 403 else "ticket-spent"
        # A spent ticket was ours: the hub's refusal page tells its tenant's pages why.
        spent = (
            {"code": refused.code, "frame_ancestors": tenant_origins(parts, refused.hub_user)}
            if refused.hub_user
            else {}
        )
        raise Problem(
            refused.status,
            "Ticket refused",
            f"The ticket was refused: {refused.reason}.",
            kind=kind,
            **spent,
        ) from None
    redemption.frame_ancestors = tenant_origins(parts, redemption.hub_user)
    return redemption


def _require_hub(parts: Gateway, authorization: str, refusal: str) -> None:
    """Refuse (401) anyone but the hub, which presents the login credential it shares with us."""
    expected = parts.settings.hub_login_token
    assert expected is not None  # the settings validator guarantees it
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise Problem(401, "Unauthorized", refusal)


class FrameAncestors(BaseModel):
    """The origins whose pages may frame a user's server: its tenant's, as they are now."""

    origins: list[str]


def tenant_origins(parts: Gateway, hub_user: str) -> list[str]:
    """The allowed origins of the tenant ``hub_user`` belongs to (none if it is disabled)."""
    tenant = parts.tenants.get(tenant_of(hub_user))
    return sorted(tenant.allowed_origins) if tenant else []


@router.get("/frame-ancestors", response_model=FrameAncestors)
async def frame_ancestors(
    request: Request, parts: GatewayDep, authorization: Annotated[str, Header()] = ""
) -> FrameAncestors:
    """For a user's server (its own hub token): which host pages may frame it now.

    The server's extension (nbembed_frames) asks every few seconds and sets its
    CSP ``frame-ancestors`` and the bridge's allowed origins from the answer, so
    an operator's change of a tenant's origins reaches running servers.
    """
    hub_user = await _server_user(request, authorization)
    return FrameAncestors(origins=tenant_origins(parts, hub_user))


@router.get("/tenants/{tenant_id}/frame-ancestors", response_model=FrameAncestors)
async def tenant_frame_ancestors(
    tenant_id: str, parts: GatewayDep, authorization: Annotated[str, Header()] = ""
) -> FrameAncestors:
    """For the hub: which host pages may frame its pages about the tenant's users, now.

    The hub keeps the answer for a few seconds (``infra/hub/hub_frames.py``), so an
    operator's change of a tenant's origins reaches the hub's own pages as it reaches
    the servers. An unknown or disabled tenant has none.
    """
    _require_hub(parts, authorization, "Only the hub asks for a tenant's framers.")
    tenant = parts.tenants.get(tenant_id)
    return FrameAncestors(origins=sorted(tenant.allowed_origins) if tenant else [])
