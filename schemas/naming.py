"""Names that more than one service must agree on, derived from the contract alone."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

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


def tenant_of(hub_user: str) -> str:
    """The tenant id a hub user name made by `hub_username` starts with."""
    return hub_user.split("-", 1)[0]


_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def user_domain(hub_user: str, domain: str, kind: str = "user") -> str:
    """The host name of ``hub_user``'s server when each server has its own origin.

    Used as JupyterHub's ``subdomain_hook`` (the hub routes and redirects by it)
    and by the services that reach or link a server (sync), so both always
    agree: ``<hub_user>.<domain>``, where ``domain`` is the hub's own host name
    (JupyterHub's ``subdomain_host``). Names nbembed makes are DNS labels
    already (tenant id, dash, base32 digest); anything else is refused rather
    than escaped, so no two users can share a host. Hub services (``kind``
    other than ``user``) get ``<name>--<kind>.<domain>`` like JupyterHub's own
    hook, which no nbembed user name can take (no ``--`` in them).
    """
    if not _DNS_LABEL.match(hub_user) or "--" in hub_user:
        raise ValueError(f"{hub_user!r} is not a host name label")
    suffix = "" if kind == "user" else f"--{kind}"
    return f"{hub_user}{suffix}.{domain}"


def user_origin(hub_user: str, subdomain_host: str) -> str:
    """``scheme://<hub_user>.<hub host>[:port]``: the origin of ``hub_user``'s server.

    ``subdomain_host`` is the hub's origin as JupyterHub's setting of that name
    holds it (``https://jupyter.example.com``).
    """
    parts = urlsplit(subdomain_host)
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"not an origin: {subdomain_host!r}")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user_domain(hub_user, parts.hostname)}{port}"
