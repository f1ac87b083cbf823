"""Endpoints for nbembed's own parts, not for host apps."""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from schemas import CloudEvent, NotebookSaved
from schemas.login_ticket import REDEEM_PATH, RedeemRequest, Redemption
from services.common.kafka import publish_event
from services.gateway.api import SOURCE
from services.gateway.deps import GatewayDep
from services.gateway.hub_identity import HubIdentity
from services.gateway.problems import Problem
from services.gateway.tickets import TicketRefused

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)
log = logging.getLogger(__name__)


class ServerSave(BaseModel):
    """A save a single-user server made itself (autosave, Ctrl-S, the bridge)."""

    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


@router.post("/server-saves", status_code=status.HTTP_202_ACCEPTED)
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
    identity: HubIdentity = request.app.state.hub_identity
    scheme, _, token = authorization.partition(" ")
    hub_user = await identity.user_of(token) if scheme.lower() == "token" and token else None
    if hub_user is None:
        raise Problem(401, "Unauthorized", "A single-user server's hub API token is required.")
    known = await parts.open_files.get(hub_user, body.path)
    if known is None:
        raise Problem(
            404,
            "Not found",
            "No open nbembed session has this file on your server; the save is not stored.",
            kind="file-not-open",
        )
    saved = NotebookSaved(
        save_id=uuid.uuid4().hex,
        tenant_id=known["tenant_id"],
        notebook_id=known["notebook_id"],
        hub_user=hub_user,
        path=body.path,
        origin="server",
    )
    await publish_event(parts.broker, CloudEvent.wrap(saved, source=SOURCE))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(REDEEM_PATH.removeprefix("/internal"), response_model=Redemption)
async def redeem_ticket(
    body: RedeemRequest, parts: GatewayDep, authorization: Annotated[str, Header()] = ""
) -> Redemption:
    """Use a login ticket, for the hub's login handler only: whom to log in, and where to.

    403 for a ticket this gateway did not sign (or tampered with), 410 for one
    that expired, was used, or whose session has ended. The ticket is never logged.
    """
    expected = parts.settings.hub_login_token
    assert expected is not None  # the settings validator guarantees it
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise Problem(401, "Unauthorized", "Only the hub's login handler redeems tickets.")
    try:
        return await parts.tickets.redeem(body.ticket, parts.sessions)
    except TicketRefused as refused:
        log.info("refused a login ticket: %s", refused.reason)
        kind = "ticket-invalid" if refused.status == 403 else "ticket-spent"
        raise Problem(
            refused.status,
            "Ticket refused",
            f"The ticket was refused: {refused.reason}.",
            kind=kind,
        ) from None
