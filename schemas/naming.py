"""Names that more than one service must agree on, derived from the contract alone."""

from __future__ import annotations

import base64
import hashlib
import re

TENANT_ID_PATTERN = r"^[a-z][a-z0-9]{1,15}$"
"""Tenant ids are short lowercase slugs: they appear in every hub username."""

HUB_USER_PATTERN = r"^[a-z0-9-]+$"
"""Hub user names as nbembed makes them (see `hub_username`): safe in URL paths."""

_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def hub_username(tenant_id: str, host_user_id: str) -> str:
    """The JupyterHub username for one host-app user of one tenant.

    Host user ids can be anything (unicode, very long, mixed case), while hub
    usernames end up in URLs, cookie paths and home folders and are lowercased
    by the hub. So the name is the tenant id and a base32 SHA-256 digest of
    the exact user id: deterministic, valid for the hub, and collision-free in
    practice (130 bits), with the tenant prefix making cross-tenant collisions
    impossible.
    """
    if not _TENANT_ID.match(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: must match {TENANT_ID_PATTERN}")
    digest = hashlib.sha256(host_user_id.encode("utf-8")).digest()
    encoded = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    return f"{tenant_id}-{encoded[:26]}"
