"""Log a browser in to the hub with a single-use ticket from nbembed's gateway.

JupyterHub's forced-login pattern (examples/forced-login), adapted to an
iframe: ``GET /hub/nbembed/login?login_token=...`` hands the ticket to the
gateway, which alone can verify it (see ``schemas/login_ticket.py``) and
answers whom it logs in and where to; the handler sets the hub's login cookie
for that user and redirects to that page on the user's server, whose own
OAuth flow with the hub then sets the server's cookie. The hub holds no key
and reads no database: it authenticates itself to the gateway with a token
only the two of them read. Traps avoided:

- login CSRF: the login answers only a navigation inside a frame
  (``Sec-Fetch-Dest: iframe``) that is not cross-site, so a user's own
  iframe URL sent to a victim as a link, or framed by another site, cannot
  replace the victim's session (``allow_top_level`` relaxes the first rule);
- a browser already logged in as another user is logged out first, so the
  ticket's user always wins (the stock login handler would skip
  authentication for an existing session);
- refusals answer 403 without raising ``HTTPError``, whose tornado warning
  line would log the full query string, ticket included; the ticket reaches
  the gateway in a POST body, never in a URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Unicode

from infra.hub.hub_frames import FRAMERS, ORIGIN, frame_ancestors
from schemas.login_ticket import (
    MAX_TICKET_LENGTH,
    QUERY_PARAMETER,
    REDEEM_PATH,
    REFUSAL_CODES,
    RedeemRequest,
    Redemption,
    is_own_page,
)
from schemas.naming import tenant_of

PAGE = """<!doctype html><title>{title}</title>
<p>{text}</p>"""
REFUSED = PAGE.format(
    title="Link expired",
    text="This notebook link has expired or was already used. "
    "Open the notebook again from the application.",
)
NOT_IN_FRAME = PAGE.format(
    title="Open from the application",
    text="This notebook link only works inside the application that showed it. "
    "Open the notebook again from the application.",
)
UNAVAILABLE = PAGE.format(
    title="Try again", text="Logging in is not possible right now. Try again in a moment."
)


PROTOCOL = "nbembed.v1"
"""The host SDK's postMessage protocol (infra/bridge/src/protocol.ts)."""


@dataclass(frozen=True)
class Refusal:
    """A ticket the gateway signed but refused now: why, and its tenant's origins."""

    code: str
    origins: tuple[str, ...]


def refused_page(refusal: Refusal | None) -> str:
    """The refusal page; for a ticket of ours, it tells the framing host page why.

    The page posts ``{protocol, type: "refused", code}`` to each of the
    tenant's origins (never "*": the browser delivers it only to a parent on
    one of them), so the SDK reports the code at once instead of waiting for a
    bridge that will never load. Nothing secret is in it: a fixed code.
    """
    if refusal is None or refusal.code not in REFUSAL_CODES:
        return REFUSED
    origins = [o for o in refusal.origins if ORIGIN.fullmatch(o)]
    message = {"protocol": PROTOCOL, "type": "refused", "code": refusal.code}
    # JSON inside <script>: "<" escaped, so no text can close the element.
    data = json.dumps([message, origins]).replace("<", "\\u003c")
    script = (
        f"<script>const [m, origins] = {data};"
        " for (const o of origins) window.parent.postMessage(m, o);</script>"
    )
    return REFUSED + "\n" + script


class TicketLoginHandler(BaseHandler):  # type: ignore[misc]
    """Redeem a login ticket and continue to the notebook it was issued for."""

    async def get(self) -> None:
        authenticator: TicketAuthenticator = self.authenticator
        if not authenticator.navigation_allowed(self.request.headers):
            self.log.warning("refused a login ticket outside an allowed frame")
            self._answer(403, NOT_IN_FRAME)
            return
        token = self.get_argument(QUERY_PARAMETER, default="")
        try:
            redemption = await authenticator.redeem(token) if token else None
        except httpx.HTTPError as error:
            self.log.error("cannot redeem login tickets: %s", type(error).__name__)
            self._answer(503, UNAVAILABLE)
            return
        if not isinstance(redemption, Redemption):
            if redemption is not None:  # ours, spent: only its tenant's pages may frame why
                policy = frame_ancestors(list(redemption.origins))
                self.set_header("Content-Security-Policy", policy)
            self._answer(403, refused_page(redemption))
            return
        current = await self.get_current_user()
        if current is not None and current.name != redemption.hub_user:
            self.log.info("replacing hub session of another user with %s", redemption.hub_user)
            self.clear_login_cookie()
        user = await self.auth_to_user({"name": redemption.hub_user})
        self.set_login_cookie(user)
        self._jupyterhub_user = user
        # Only the pages of this user's tenant may frame what follows, as the
        # tenant's origins are now (an operator may change them at any time).
        self.set_header("Content-Security-Policy", frame_ancestors(redemption.frame_ancestors))
        # The hub's pages about this user (after a cull, a spawn) get the same framers.
        FRAMERS.remember(tenant_of(redemption.hub_user), redemption.frame_ancestors)
        # user.host is "" when all servers share the hub's origin, and the user's own
        # origin (scheme://<user>.<hub host>) with per-user origins.
        self.redirect(user.host + redemption.next_path)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Tornado's own line for an uncaught error names the full URL, ticket included.
        # The traceback is kept for errors of the code; tornado's HTTPError has none worth it.
        trace = None if isinstance(value, web.HTTPError) else (typ, value, tb)
        self.log.error("the ticket login failed: %s", getattr(typ, "__name__", typ), exc_info=trace)

    def _answer(self, status: int, page: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


class TicketAuthenticator(Authenticator):  # type: ignore[misc]
    """Users log in only through tickets the gateway redeems; there is no login form."""

    auto_login = True
    gateway_url = Unicode(config=True, help="nbembed's gateway, which redeems tickets.")
    redeem_token_file = Unicode(
        config=True, help="File with the token the hub presents to the gateway to redeem."
    )
    allow_top_level = Bool(
        False,
        config=True,
        help="Also accept a login as a top-level page, not only inside a frame "
        "(reopens login CSRF: a user's link sent to another user logs them in).",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: httpx.AsyncClient | None = None
        FRAMERS.connect(self.tenant_framers)

    async def tenant_framers(self, tenant: str) -> list[str] | None:
        """The origins allowed to frame the hub's pages about ``tenant``'s users, or
        None when the gateway cannot say (the hub keeps what it knew)."""
        path = f"/internal/tenants/{quote(tenant, safe='')}/frame-ancestors"
        try:
            response = await self._gateway().get(path)
        except httpx.HTTPError as error:
            self.log.warning("cannot ask the gateway for framers: %s", type(error).__name__)
            return None
        if response.status_code != 200:
            self.log.warning("the gateway refused framers (%s)", response.status_code)
            return None
        origins = response.json().get("origins")
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            return None
        return origins

    def navigation_allowed(self, headers: Any) -> bool:
        """Whether the browser's Fetch Metadata says: a frame, and not from another site.

        Browsers send these headers to HTTPS and loopback origins; a request
        without them is refused, as is one a frame on another site made.
        """
        destinations = {"iframe", "document"} if self.allow_top_level else {"iframe"}
        return (
            headers.get("Sec-Fetch-Dest", "") in destinations
            and headers.get("Sec-Fetch-Site", "") != "cross-site"
        )

    def _gateway(self) -> httpx.AsyncClient:
        if self._client is None:
            token = Path(self.redeem_token_file).read_text().strip()
            self._client = httpx.AsyncClient(
                base_url=self.gateway_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
        return self._client

    async def redeem(self, ticket: str) -> Redemption | Refusal | None:
        """Whom ``ticket`` logs in and where to, now used; a `Refusal` for a ticket the
        gateway signed but refuses now (expired, used, session ended); None otherwise.

        Raises ``httpx.HTTPError`` when the gateway cannot answer.
        """
        if len(ticket) > MAX_TICKET_LENGTH:
            return None
        response = await self._gateway().post(
            REDEEM_PATH, json=RedeemRequest(ticket=ticket).model_dump()
        )
        if response.status_code in (403, 410, 422):
            self.log.warning("refused a login ticket (gateway answered %s)", response.status_code)
            return _refusal(response) if response.status_code == 410 else None
        response.raise_for_status()
        redemption = Redemption.model_validate_json(response.content)
        if not is_own_page(redemption.hub_user, redemption.next_path):
            self.log.error("the gateway answered a page of another user's server")
            return None
        return redemption

    def login_url(self, base_url: str) -> str:
        return str(url_path_join(base_url, "nbembed/login"))

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [(r"/nbembed/login", TicketLoginHandler)]

    async def authenticate(self, handler: Any, data: Any) -> None:
        # No form and no other way in: logins happen only in TicketLoginHandler.
        return None


def _refusal(response: httpx.Response) -> Refusal | None:
    """The code and origins of the gateway's 410, if it has them in the expected shapes."""
    try:
        problem = response.json()
    except ValueError:
        return None
    code = problem.get("code") if isinstance(problem, dict) else None
    origins = problem.get("frame_ancestors") if isinstance(problem, dict) else None
    if code not in REFUSAL_CODES or not isinstance(origins, list):
        return None
    return Refusal(code, tuple(o for o in origins if isinstance(o, str) and ORIGIN.fullmatch(o)))
