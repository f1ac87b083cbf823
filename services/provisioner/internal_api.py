"""The provisioner's internal HTTP API: sync gets per-user server tokens here.

The provisioner is the only nbembed service holding the hub service token.
Sync, which calls users' servers, asks here for a token of the one user whose
server it is about to call; the hub mints it with that user's own rights,
narrowed to ``access:servers!server=<user>/`` and an expiry. Every call
carries sync's secret (``Authorization: Bearer``), which only sync and the
provisioner hold.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Path

from schemas.naming import HUB_USER_PATTERN
from schemas.server_token import TOKEN_NOTE, ServerToken
from services.provisioner.hub import HubClient, HubError

HubUserParam = Annotated[str, Path(min_length=1, max_length=64, pattern=HUB_USER_PATTERN)]


def create_internal_api(hub: HubClient, secret: str, *, token_seconds: int) -> FastAPI:
    """The internal API, to mount under ``/internal`` of the provisioner's HTTP server."""
    expected = f"Bearer {secret}".encode()

    def authorised(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "sync's token required")

    api = FastAPI(
        title="nbembed provisioner (internal)",
        dependencies=[Depends(authorised)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @api.post("/users/{hub_user}/server-token")
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
