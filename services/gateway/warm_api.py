"""Warm-ups: a host starts a user's server before the user opens any notebook.

A host calls ``POST /v1/users/{user_id}/warm`` when its user logs in (or
lands on a page that will show a notebook); the provisioner starts the
user's server then, so the session asked for a few seconds later finds it
running and is ready as fast as for a returning user. The request travels
like a session's (the outbox, then Kafka, in order with the user's session
commands) and is idempotent: a server already running is left as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, status
from pydantic import BaseModel, ConfigDict, Field

from schemas import CloudEvent, Profile, ServerWarmRequested, hub_username
from services.gateway.api import SOURCE, record, resolve_profile
from services.gateway.deps import GatewayDep, TenantDep
from services.gateway.outbox import event_entry
from services.gateway.problems import errors
from services.gateway.store import WarmUps

router = APIRouter(prefix="/v1", tags=["sessions"])


class WarmUp(BaseModel):
    """What to start the user's server with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    profile: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None,
        description="One of the tenant's profiles (GET it from your operator); omitted: "
        "the tenant's default profile. Unknown: 422.",
    )


class WarmUpView(BaseModel):
    """The warm-up the gateway accepted: the user's server starts unless it runs."""

    user_id: str
    status: Annotated[str, Field(description="Always requested: a warm-up is a hint.")]
    profile: Profile | None = Field(description="The profile the server starts with.")
    restricted: bool = Field(description="The tenant's restricted-data mode.")
    requested_at: datetime


@router.post(
    "/users/{user_id:path}/warm",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WarmUpView,
    responses=errors(),
)
async def warm_user(
    user_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=512,
            description="The host app's own id for the user (as in POST /v1/sessions).",
        ),
    ],
    tenant: TenantDep,
    parts: GatewayDep,
    body: Annotated[WarmUp | None, Body()] = None,
) -> WarmUpView:
    """Start the user's Jupyter server ahead of any session (idempotent).

    Call it when the user logs in to your app: a session requested afterwards
    finds the server running and is ready in the time of a returning user.
    A running server is left as it is (whatever its profile); an idle one is
    stopped by the idle culler like any other.
    """
    profile = resolve_profile(tenant, body.profile if body else None)
    hub_user = hub_username(tenant.id, user_id)
    warm = ServerWarmRequested(
        tenant_id=tenant.id,
        hub_user=hub_user,
        host_user_id=user_id,
        restricted=tenant.restricted,
        profile=profile,
    )
    entries = event_entry(CloudEvent.wrap(warm, source=SOURCE, subject=hub_user))
    hold, doc = await record(
        parts,
        WarmUps.COLLECTION,
        hub_user,
        entries,
        lambda: parts.warmups.record(
            hub_user, {"tenant_id": tenant.id, "host_user_id": user_id}, entries
        ),
    )
    await parts.audit_users.remember(hub_user, tenant.id, user_id)
    # A new warm-up replaces the record's entries: an older one still owed asks the same.
    await parts.outbox.deliver(WarmUps.COLLECTION, hub_user, entries, hold)
    return WarmUpView(
        user_id=user_id,
        status="requested",
        profile=profile,
        restricted=tenant.restricted,
        requested_at=doc["requested_at"],
    )
