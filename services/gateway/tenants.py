"""Tenants (host apps) and their API keys, kept in the store and managed at run time.

Keys are random high-entropy tokens, so a SHA-256 digest is enough to store
them (no slow hash needed, unlike passwords); they are compared in constant
time so a caller cannot learn a digest byte by byte from response timing.

Every request is authenticated against an in-memory snapshot of the tenants
collection that each gateway replica reloads every few seconds: a tenant
created, rotated, re-originated or disabled by an operator takes effect on
every replica within that interval, without a restart and without a store
read on the hot path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator
from pymongo import AsyncMongoClient, ReturnDocument

from schemas.naming import TENANT_ID_PATTERN
from schemas.profiles import MAX_PROFILES, Profile
from services.common.mongo import upsert

log = logging.getLogger(__name__)

API_KEY_PREFIX = "nbk_"
"""Keys the gateway generates start with this (browser tokens start with ``nbs_``)."""


def key_digest(api_key: str) -> str:
    """What the store keeps of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh API key (shown once, to the operator who asked for it)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class Tenant(BaseModel):
    """One host application."""

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = ""
    api_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    previous_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", repr=False)
    previous_key_expires_at: datetime | None = Field(
        default=None, description="Until when the key replaced by the last rotation still works."
    )
    allowed_origins: list[str] = []
    restricted: bool = Field(
        default=False,
        description="Restricted-data mode for every session of this tenant: downloads and "
        "exports are closed on the user's server and in its page. A session may only ask "
        "for stricter, never weaker.",
    )
    disabled: bool = Field(default=False, description="A disabled tenant's keys answer 401.")
    profiles: list[Profile] = Field(
        default_factory=list,
        max_length=MAX_PROFILES,
        description="The environments this tenant's sessions may name; none: every "
        "session runs the server's default kernel as configured.",
    )
    default_profile: str | None = Field(
        default=None, description="The profile of a session that names none (the first if unset)."
    )

    @model_validator(mode="after")
    def _profiles_consistent(self) -> Tenant:
        names = [profile.name for profile in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError("profile names must be unique within a tenant")
        if self.default_profile is not None and self.default_profile not in names:
            raise ValueError(f"default profile {self.default_profile!r} is not a profile")
        return self

    def profile(self, name: str | None) -> Profile | None:
        """The profile ``name`` of this tenant (its default when None); KeyError if unknown.

        Looked up in this tenant's own list only: another tenant's profile
        name is as unknown as a made-up one.
        """
        if name is None:
            if not self.profiles:
                return None
            name = self.default_profile or self.profiles[0].name
        for profile in self.profiles:
            if profile.name == name:
                return profile
        raise KeyError(name)

    def key_digests(self, now: datetime) -> list[str]:
        """The digests that authenticate this tenant now (none when disabled)."""
        if self.disabled:
            return []
        digests = [self.api_key_sha256]
        expires = self.previous_key_expires_at
        if self.previous_key_sha256 and expires is not None:
            if expires.tzinfo is None:  # the store hands back naive UTC datetimes
                expires = expires.replace(tzinfo=UTC)
            if now < expires:
                digests.append(self.previous_key_sha256)
        return digests


class TenantRegistry:
    """The tenants the gateway knows now, looked up by API key."""

    def __init__(self, tenants: Iterable[Tenant] = ()) -> None:
        self._tenants = list(tenants)

    @classmethod
    def from_file(cls, path: Path) -> TenantRegistry:
        """Load tenants from a JSON list; a malformed file fails at start, not per request."""
        return cls(load_file(path))

    def replace(self, tenants: Iterable[Tenant]) -> None:
        """Swap in a fresh snapshot (one assignment: requests see the old or the new one)."""
        self._tenants = list(tenants)

    def authenticate(self, api_key: str, now: datetime | None = None) -> Tenant | None:
        """The tenant whose key this is, or None; checks every key in constant time."""
        digest = key_digest(api_key)
        moment = now or datetime.now(UTC)
        found = None
        for tenant in self._tenants:
            for candidate in tenant.key_digests(moment):
                if hmac.compare_digest(digest, candidate):
                    found = tenant
        return found

    def get(self, tenant_id: str) -> Tenant | None:
        """An enabled tenant by id (for the hub's per-tenant answers)."""
        for tenant in self._tenants:
            if tenant.id == tenant_id and not tenant.disabled:
                return tenant
        return None

    def allowed_origins(self) -> set[str]:
        """Every origin some enabled tenant's pages are served from (for CORS)."""
        return {o for t in self._tenants if not t.disabled for o in t.allowed_origins}


def load_file(path: Path) -> list[Tenant]:
    """The tenants of a bootstrap file (a JSON list), validated."""
    return [Tenant.model_validate(item) for item in json.loads(path.read_text())]


class TenantStore:
    """The ``tenants`` collection: one document per tenant, ``_id`` its id."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._docs = client[database]["tenants"]

    async def all(self) -> list[Tenant]:
        """Every tenant, disabled ones included (a small collection, read whole)."""
        return [_tenant(doc) async for doc in self._docs.find({})]

    async def get(self, tenant_id: str) -> Tenant | None:
        """One tenant by id, or None."""
        doc = await self._docs.find_one({"_id": tenant_id})
        return _tenant(doc) if doc else None

    async def create(self, tenant: Tenant) -> bool:
        """Insert a new tenant; False when the id is taken (nothing changes then)."""
        # Losing an insert race, the retry is an update that inserts nothing: False.
        doc = {"$setOnInsert": _doc(tenant)}
        result = await upsert(lambda: self._docs.update_one({"_id": tenant.id}, doc, upsert=True))
        return result.upserted_id is not None

    async def put(self, tenant: Tenant) -> None:
        """Write a tenant whole (the bootstrap file's tenants at start)."""
        # Every gateway replica seeds the same tenants at start, at the same moment.
        doc = _doc(tenant)
        await upsert(lambda: self._docs.replace_one({"_id": tenant.id}, doc, upsert=True))

    async def update(self, tenant_id: str, **fields: Any) -> Tenant | None:
        """Set ``fields`` on a tenant; the tenant after the change, or None if unknown."""
        fields["updated_at"] = datetime.now(UTC)
        doc = await self._docs.find_one_and_update(
            {"_id": tenant_id}, {"$set": fields}, return_document=ReturnDocument.AFTER
        )
        return _tenant(doc) if doc else None

    async def rotate_key(self, tenant_id: str, grace: timedelta) -> tuple[Tenant, str] | None:
        """Give the tenant a new key; the current one keeps working for ``grace``."""
        current = await self.get(tenant_id)
        if current is None:
            return None
        api_key = new_api_key()
        updated = await self.update(
            tenant_id,
            api_key_sha256=key_digest(api_key),
            previous_key_sha256=current.api_key_sha256 if grace > timedelta(0) else None,
            previous_key_expires_at=datetime.now(UTC) + grace if grace > timedelta(0) else None,
        )
        return (updated, api_key) if updated else None


def _doc(tenant: Tenant) -> dict[str, Any]:
    fields = tenant.model_dump(exclude={"id"})
    return {"_id": tenant.id, **fields, "updated_at": datetime.now(UTC)}


def _tenant(doc: dict[str, Any]) -> Tenant:
    return Tenant.model_validate({**doc, "id": doc["_id"]})


async def seed(store: TenantStore, path: Path | None) -> None:
    """Write the bootstrap file's tenants into the store (the file wins for those ids).

    The local stack describes its demo tenants in a file it rewrites at each
    start; production deployments leave it out and manage tenants with
    ``python -m nbembed.admin`` only.
    """
    if path is None:
        return
    for tenant in load_file(path):
        await store.put(tenant)


async def keep_fresh(
    registry: TenantRegistry, store: TenantStore, interval: float, loaded: asyncio.Event
) -> None:
    """Reload the registry from the store every ``interval`` seconds, forever.

    A failed read keeps the last snapshot (the store being down must not lock
    every tenant out) and is retried at the next tick.
    """
    while True:
        try:
            registry.replace(await store.all())
            loaded.set()
        except Exception as exc:  # any store failure: keep serving the last snapshot
            log.warning("tenant reload failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval)
