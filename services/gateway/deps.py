"""What every route needs: the gateway's parts, and who is calling."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka import KafkaBroker
from pydantic import SecretStr

from services.gateway.audit_store import AuditStore, AuditUsers
from services.gateway.outbox import Outbox
from services.gateway.problems import Problem
from services.gateway.rate_limit import RateLimiter
from services.gateway.rendering import ViewCache
from services.gateway.settings import GatewaySettings
from services.gateway.store import (
    InputRecords,
    NotebookView,
    OpenFiles,
    SaveStore,
    SessionRestores,
    SessionStore,
    WarmUps,
)
from services.gateway.sync_client import SyncClient
from services.gateway.tenants import Tenant, TenantRegistry, TenantStore
from services.gateway.tickets import Tickets

SESSION_TOKEN_PREFIX = "nbs_"  # noqa: S105 - a prefix, not a secret
"""Browser tokens (one session's saves) start with this; tenant API keys never do."""


@dataclass(frozen=True)
class Gateway:
    """The gateway's connections and stores, built once in `app.create_app`."""

    settings: GatewaySettings
    broker: KafkaBroker
    tenants: TenantRegistry
    tenant_store: TenantStore
    sessions: SessionStore
    saves: SaveStore
    notebooks: NotebookView
    open_files: OpenFiles
    restores: SessionRestores
    inputs: InputRecords
    warmups: WarmUps
    tickets: Tickets
    sync: SyncClient
    audit: AuditStore
    audit_users: AuditUsers
    audit_reports: RateLimiter
    views: ViewCache
    outbox: Outbox


def gateway(request: Request) -> Gateway:
    """The gateway's parts (stored on the app state at start)."""
    parts: Gateway = request.app.state.gateway
    return parts


GatewayDep = Annotated[Gateway, Depends(gateway)]
bearer = HTTPBearer(auto_error=False, description="The tenant's API key.")


def require_secret(
    credentials: HTTPAuthorizationCredentials | None, expected: SecretStr | None, what: str
) -> None:
    """401 unless the Bearer credential is ``expected`` (compared in constant time).

    For the gateway's own credentials (operator, metrics): unset refuses everyone.
    """
    given = credentials.credentials if credentials else ""
    if expected is None or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        problem = Problem(401, "Unauthorized", f"The {what} credential is required.")
        problem.headers["WWW-Authenticate"] = "Bearer"
        raise problem


def _unauthorised(detail: str) -> Problem:
    problem = Problem(401, "Unauthorized", detail)
    problem.headers["WWW-Authenticate"] = "Bearer"
    return problem


async def current_tenant(
    parts: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant whose API key is in ``Authorization: Bearer``; 401 otherwise."""
    tenant = parts.tenants.authenticate(credentials.credentials) if credentials else None
    if tenant is None:
        raise _unauthorised("A valid tenant API key is required (Authorization: Bearer <key>).")
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


@dataclass(frozen=True)
class Caller:
    """A tenant's backend (any of its sessions) or a host page (one session only)."""

    tenant_id: str
    session_id: str | None

    def may_use(self, session_id: str | None) -> bool:
        """Whether this caller may act on ``session_id``."""
        return self.session_id is None or self.session_id == session_id


def session_token_digest(token: str) -> str:
    """What the session stores of its browser token."""
    return hashlib.sha256(token.encode()).hexdigest()


async def current_caller(
    parts: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """A tenant API key, or a session's browser token on that session's own routes."""
    token = credentials.credentials if credentials else ""
    if not token.startswith(SESSION_TOKEN_PREFIX):
        tenant = parts.tenants.authenticate(token) if token else None
        if tenant is None:
            raise _unauthorised("A tenant API key or the session's browser token is required.")
        return Caller(tenant.id, None)
    # A browser token names no session; routes under a session check it against
    # that session, and /v1/saves/{id} against the save's session.
    return Caller("", session_token_digest(token))


CallerDep = Annotated[Caller, Depends(current_caller)]


async def resolve_session_caller(parts: Gateway, caller: Caller, session_id: str) -> Caller:
    """Turn a browser-token caller into one bound to ``session_id`` if the token is its own."""
    if caller.tenant_id:
        return caller
    doc = await parts.sessions.get_any(session_id)
    expected = doc.get("browser_token_sha256", "") if doc else ""
    if not doc or not hmac.compare_digest(expected, caller.session_id or ""):
        raise Problem(
            404, "Not found", f"No session {session_id} for this token.", kind="session-not-found"
        )
    return Caller(doc["tenant_id"], session_id)
