"""The provisioner's internal HTTP API: sync gets per-user server tokens here, and
the hub tells which servers stopped.

The provisioner is the only nbembed service holding the hub service token.
Sync, which calls users' servers, asks here for a token of the one user whose
server it is about to call; the hub mints it with that user's own rights,
narrowed to ``access:servers!server=<user>/`` and an expiry. Those calls
carry sync's secret (``Authorization: Bearer``), which only sync and the
provisioner hold.

The hub's ``post_stop_hook`` (infra/hub/server_stops.py) posts every stopped
server to ``/hub/server-stopped`` with a secret of its own, which only the hub
and the provisioner hold (never a single-user server). Why HTTP and not Kafka:
the hub holds no broker credential and should not (it is the component every
user's browser talks to); the notice becomes a `ServerStopped` event here, so
it is handled in order with the user's session commands.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Response

from schemas import CloudEvent, ServerStopped
from schemas.naming import HUB_USER_PATTERN
from schemas.server_token import TOKEN_NOTE, ServerToken
from services.provisioner.hub import HubClient, HubError

HubUserParam = Annotated[str, Path(min_length=1, max_length=64, pattern=HUB_USER_PATTERN)]
StopNotice = Callable[[CloudEvent[ServerStopped]], Awaitable[None]]


def _bearer(secret: str, whose: str) -> Callable[[str], None]:
    expected = f"Bearer {secret}".encode()

    def authorised(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, f"{whose} token required")

    return authorised


def create_internal_api(
    hub: HubClient,
    secret: str,
    *,
    token_seconds: int,
    hub_notice_secret: str | None,
    on_server_stopped: StopNotice,
) -> FastAPI:
    """The internal API, to mount under ``/internal`` of the provisioner's HTTP server.

    Without ``hub_notice_secret`` the hub's route does not exist (stopped
    servers are then found by reconciliation alone).
    """
    sync_only = [Depends(_bearer(secret, "sync's"))]
    api = FastAPI(
        title="nbembed provisioner (internal)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    if hub_notice_secret:
        hub_only = [Depends(_bearer(hub_notice_secret, "the hub's"))]

        @api.post("/hub/server-stopped", status_code=204, dependencies=hub_only)
        async def server_stopped(notice: ServerStopped) -> Response:
            """The hub stopped a server: handle it in order with that user's sessions."""
            await on_server_stopped(CloudEvent.wrap(notice, source="/nbembed/hub"))
            return Response(status_code=204)

    @api.post("/users/{hub_user}/server-token", dependencies=sync_only)
    async def server_token(hub_user: HubUserParam) -> ServerToken:
        """A fresh token of ``hub_user`` that reaches that user's server alone, expiring."""
        try:
            token, expires_at = await hub.mint_server_token(
                hub_user, seconds=token_seconds, note=TOKEN_NOTE
            )
        except HubError as exc:
            if exc.status == 404:
                raise HTTPException(404, f"no hub user {hub_user}") from exc
            raise HTTPException(503, f"the hub did not mint a token: {exc}") from exc
        remaining = int((expires_at - datetime.now(UTC)).total_seconds())
        return ServerToken(
            hub_user=hub_user,
            token=token,
            expires_in=max(1, min(token_seconds, remaining)),
            expires_at=expires_at,
        )

    return api
