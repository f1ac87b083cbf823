"""The hub's own pages about a user may be framed by that user's tenant's pages only.

Servers narrow their CSP to their tenant's origins (``nbembed_frames``), and the
ticket login answers with the redeemed user's. The hub's other pages that can
show up in a host's frame are about one user: ``/hub/user/<name>/…`` (the
"server not running" page after a cull), ``/hub/spawn/<name>`` and
``/hub/spawn-pending/<name>``. A Tornado output transform gives each of those
``frame-ancestors 'self'`` plus that user's tenant's origins, and leaves every
other hub page at the hub's default, ``frame-ancestors 'self'``: no host page
can frame the token, admin or home pages (clickjacking), and no tenant can
frame a page about another tenant's user.

The origins come from the gateway (the hub presents the credential it redeems
tickets with) and are kept per tenant for a few seconds. A transform cannot wait
for an answer, so a tenant not asked before gets ``'self'`` only on that first
page and is asked in the background (fail closed). A ticket login remembers its
tenant's origins from the redemption, so the pages after a login have them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from tornado import httputil, web

from schemas.naming import tenant_of

CSP = "Content-Security-Policy"
HUB_DEFAULT = "frame-ancestors 'self'"
"""The CSP of every hub page not about one user (the hub's ``tornado_settings``)."""

USER_PAGE = re.compile(r"/hub/(?:user|spawn|spawn-pending)/(?P<user>[a-z0-9-]+)(?:/.*)?")
"""A whole request path about one user, named as hub users are (`schemas.hub_username`).
Whole: a page that only *contains* such a path (``/hub/user-redirect/hub/user/<name>``,
a 404 under ``/hub/token/…``, an encoded ``%2F..``) is not. (A hub served under a base
URL other than ``/`` thus lets no host frame these pages.)"""
ORIGIN = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+")
"""What may go into a CSP source list: an origin, nothing that could end or extend the policy."""

Fetch = Callable[[str], Awaitable[list[str] | None]]


def frame_ancestors(origins: list[str]) -> str:
    """A CSP naming ``origins`` as the only framers (besides the hub itself)."""
    safe = [o for o in origins if ORIGIN.fullmatch(o)]
    return " ".join(["frame-ancestors", "'self'", *safe])


class TenantFramers:
    """Each tenant's allowed origins as the gateway last said, asked again when stale."""

    def __init__(self, max_age: float = 5.0) -> None:
        self.max_age = max_age
        self._fetch: Fetch | None = None
        self._known: dict[str, tuple[list[str], float]] = {}
        self._asking: dict[str, asyncio.Task[None]] = {}

    def connect(self, fetch: Fetch) -> None:
        """Where to ask (the authenticator's gateway client, once it exists)."""
        self._fetch = fetch

    def remember(self, tenant: str, origins: list[str]) -> None:
        self._known[tenant] = (list(origins), time.monotonic())

    def origins(self, tenant: str) -> list[str]:
        """What the gateway last said (``[]`` if never), asking again in the background
        when that is older than ``max_age``."""
        origins, at = self._known.get(tenant, ([], float("-inf")))
        if time.monotonic() - at > self.max_age:
            self._ask_soon(tenant)
        return origins

    def _ask_soon(self, tenant: str) -> None:
        if self._fetch is None or tenant in self._asking:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._asking[tenant] = loop.create_task(self._ask(tenant, self._fetch))

    async def _ask(self, tenant: str, fetch: Fetch) -> None:
        try:
            answer = await fetch(tenant)
            if answer is not None:
                self.remember(tenant, answer)
        finally:
            self._asking.pop(tenant, None)


FRAMERS = TenantFramers()
"""The hub process's one cache (the transform is built per request by Tornado)."""


def user_of_page(path: str) -> str | None:
    """The hub user a hub page is about, or None for any other page."""
    found = USER_PAGE.fullmatch(path)
    return found["user"] if found else None


class TenantFrameAncestors(web.OutputTransform):
    """Sets the CSP of hub pages about one user to that user's tenant's framers."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        super().__init__(request)
        self._path = request.path

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        # Only the hub's default is replaced: a handler that set its own (the ticket
        # login) keeps it.
        if headers.get(CSP) == HUB_DEFAULT:
            user = user_of_page(self._path)
            if user is not None:
                headers[CSP] = frame_ancestors(FRAMERS.origins(tenant_of(user)))
        return status_code, headers, chunk
