"""The operator's API: tenants as data, changed at run time.

Guarded by the operator credential (``NBEMBED_GATEWAY_ADMIN_TOKEN_FILE``),
which no tenant, host page or user's server holds: tenant API keys and
browser tokens answer 401 here. ``python -m nbembed.admin`` is its client.
Changes reach every gateway replica at its next tenant reload (a few
seconds, ``NBEMBED_GATEWAY_TENANTS_REFRESH_SECONDS``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from schemas.naming import TENANT_ID_PATTERN
from schemas.profiles import MAX_PROFILES, PROFILE_NAME_PATTERN, Profile
from services.gateway.deps import Gateway, GatewayDep, bearer, require_secret
from services.gateway.problems import Problem, errors
from services.gateway.tenants import Tenant, key_digest, new_api_key


async def operator(
    parts: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Let only the operator credential through; 401 for anything else."""
    require_secret(credentials, parts.settings.admin_token, "operator")


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(operator)])

Origin = Annotated[str, Field(max_length=300)]


class TenantCreate(BaseModel):
    """A new host app."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TENANT_ID_PATTERN, description="Stable id, also in hub user names.")
    name: str = Field(default="", max_length=200)
    allowed_origins: list[Origin] = Field(default_factory=list, max_length=50)
    restricted: bool = False


class TenantView(BaseModel):
    """A tenant as the operator sees it (never a key, never a digest)."""

    id: str
    name: str
    allowed_origins: list[str]
    restricted: bool
    disabled: bool
    previous_key_expires_at: datetime | None
    profiles: list[Profile] = []
    default_profile: str | None = None

    @classmethod
    def of(cls, tenant: Tenant) -> TenantView:
        """The operator's view of ``tenant``."""
        return cls(
            id=tenant.id,
            name=tenant.name,
            allowed_origins=tenant.allowed_origins,
            restricted=tenant.restricted,
            disabled=tenant.disabled,
            previous_key_expires_at=tenant.previous_key_expires_at
            if tenant.previous_key_sha256
            else None,
            profiles=tenant.profiles,
            default_profile=(tenant.default_profile or tenant.profiles[0].name)
            if tenant.profiles
            else None,
        )


class TenantWithKey(TenantView):
    """A tenant with its new API key: the only answer that ever shows a key."""

    api_key: str


class RotateKey(BaseModel):
    """How long the key being replaced keeps working."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        default=3600, ge=0, le=30 * 86400, description="0: the old key stops at once."
    )


class Origins(BaseModel):
    """The origins the tenant's pages are served from."""

    model_config = ConfigDict(extra="forbid")

    allowed_origins: list[Origin] = Field(max_length=50)


class Restricted(BaseModel):
    """Restricted-data mode for every session of the tenant."""

    model_config = ConfigDict(extra="forbid")

    restricted: bool


class Profiles(BaseModel):
    """The environments the tenant's sessions may name, and the one they get by default."""

    model_config = ConfigDict(extra="forbid")

    profiles: list[Profile] = Field(max_length=MAX_PROFILES)
    default_profile: Annotated[str, Field(pattern=PROFILE_NAME_PATTERN)] | None = Field(
        default=None, description="Omitted: the first profile."
    )


def _profiles(body: Profiles) -> dict[str, Any]:
    """The tenant fields for ``body``: unique names, a default that exists; else 422."""
    names = [profile.name for profile in body.profiles]
    if len(set(names)) != len(names):
        raise Problem(
            422, "Invalid profiles", "Profile names must be unique.", kind="invalid-profiles"
        )
    if body.default_profile is not None and body.default_profile not in names:
        raise Problem(
            422,
            "Invalid profiles",
            f"The default profile {body.default_profile!r} is not one of the profiles.",
            kind="invalid-profiles",
        )
    return {
        "profiles": [profile.model_dump() for profile in body.profiles],
        "default_profile": body.default_profile,
    }


def _origin_of(value: str) -> str | None:
    """``value`` as browsers send it in ``Origin`` (no default port), or None if not an origin."""
    try:
        url = HttpUrl(value)
    except ValueError:
        return None
    port = f":{url.port}" if url.port not in (None, 80, 443) else ""
    origin = f"{url.scheme}://{url.host}{port}"
    return origin if value.rstrip("/") == origin else None


def _origins(values: list[str]) -> list[str]:
    """Exact origins (scheme://host[:port]); anything else, a path included, is a 422."""
    for value in values:
        if _origin_of(value) is None:
            raise Problem(
                422,
                "Invalid origin",
                f"{value!r} is not an origin: give scheme://host[:port], no path.",
                kind="invalid-origin",
            )
    return sorted({value.rstrip("/") for value in values})


def _not_found(tenant_id: str) -> Problem:
    return Problem(404, "Not found", f"No tenant {tenant_id}.", kind="tenant-not-found")


async def _update(parts: Gateway, tenant_id: str, **fields: Any) -> TenantView:
    """Set ``fields`` on the tenant; its view after the change, or 404."""
    tenant = await parts.tenant_store.update(tenant_id, **fields)
    if tenant is None:
        raise _not_found(tenant_id)
    return TenantView.of(tenant)


@router.get("/tenants", response_model=list[TenantView])
async def list_tenants(parts: GatewayDep) -> list[TenantView]:
    """Every tenant, disabled ones included."""
    return [TenantView.of(t) for t in sorted(await parts.tenant_store.all(), key=lambda t: t.id)]


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantWithKey,
    responses=errors(409),
)
async def create_tenant(body: TenantCreate, parts: GatewayDep) -> TenantWithKey:
    """Create a tenant and its first API key (shown in this answer only)."""
    api_key = new_api_key()
    tenant = Tenant(
        id=body.id,
        name=body.name,
        api_key_sha256=key_digest(api_key),
        allowed_origins=_origins(body.allowed_origins),
        restricted=body.restricted,
    )
    if not await parts.tenant_store.create(tenant):
        raise Problem(409, "Conflict", f"Tenant {body.id} exists.", kind="tenant-exists")
    return TenantWithKey(**TenantView.of(tenant).model_dump(), api_key=api_key)


@router.post("/tenants/{tenant_id}/rotate-key", response_model=TenantWithKey)
async def rotate_key(tenant_id: str, body: RotateKey, parts: GatewayDep) -> TenantWithKey:
    """A new API key; the replaced one keeps working for ``grace_seconds``."""
    rotated = await parts.tenant_store.rotate_key(tenant_id, timedelta(seconds=body.grace_seconds))
    if rotated is None:
        raise _not_found(tenant_id)
    tenant, api_key = rotated
    return TenantWithKey(**TenantView.of(tenant).model_dump(), api_key=api_key)


@router.put("/tenants/{tenant_id}/origins", response_model=TenantView)
async def set_origins(tenant_id: str, body: Origins, parts: GatewayDep) -> TenantView:
    """Replace the tenant's allowed origins (CORS, and the frame-ancestors of its users)."""
    return await _update(parts, tenant_id, allowed_origins=_origins(body.allowed_origins))


@router.put("/tenants/{tenant_id}/restricted", response_model=TenantView)
async def set_restricted(tenant_id: str, body: Restricted, parts: GatewayDep) -> TenantView:
    """Turn restricted-data mode on or off for the tenant's new sessions."""
    return await _update(parts, tenant_id, restricted=body.restricted)


@router.put("/tenants/{tenant_id}/profiles", response_model=TenantView)
async def set_profiles(tenant_id: str, body: Profiles, parts: GatewayDep) -> TenantView:
    """Replace the tenant's profiles (new sessions and warm-ups; running servers keep theirs)."""
    return await _update(parts, tenant_id, **_profiles(body))


@router.post("/tenants/{tenant_id}/disable", response_model=TenantView)
async def disable(tenant_id: str, parts: GatewayDep) -> TenantView:
    """Stop accepting the tenant's keys (its stored notebooks stay)."""
    return await _update(parts, tenant_id, disabled=True)


@router.post("/tenants/{tenant_id}/enable", response_model=TenantView)
async def enable(tenant_id: str, parts: GatewayDep) -> TenantView:
    """Accept the tenant's keys again."""
    return await _update(parts, tenant_id, disabled=False)
