"""Tenants (host apps) and their API keys.

Keys are random high-entropy tokens, so a SHA-256 digest is enough to store
them (no slow hash needed, unlike passwords); they are compared in constant
time so a caller cannot learn a digest byte by byte from response timing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from pydantic import BaseModel, Field

from schemas.naming import TENANT_ID_PATTERN


class Tenant(BaseModel):
    """One host application."""

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = ""
    api_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    allowed_origins: list[str] = []
    restricted: bool = Field(
        default=False,
        description="Restricted-data mode for every session of this tenant: downloads and "
        "exports are closed on the user's server and in its page. A session may only ask "
        "for stricter, never weaker.",
    )


class TenantRegistry:
    """The tenants the gateway knows, looked up by API key."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self._tenants = tenants

    @classmethod
    def from_file(cls, path: Path) -> TenantRegistry:
        """Load tenants from a JSON list; a malformed file fails at start, not per request."""
        return cls([Tenant.model_validate(item) for item in json.loads(path.read_text())])

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant whose key this is, or None; checks every tenant in constant time."""
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        found = None
        for tenant in self._tenants:
            if hmac.compare_digest(digest, tenant.api_key_sha256):
                found = tenant
        return found

    def allowed_origins(self) -> list[str]:
        """Every origin some tenant's pages are served from (for CORS)."""
        return sorted({origin for tenant in self._tenants for origin in tenant.allowed_origins})
