"""Log a browser in to the hub with a single-use ticket from nbembed's gateway.

JupyterHub's forced-login pattern (examples/forced-login), adapted to an
iframe: ``GET /hub/nbembed/login?login_token=...`` redeems the ticket (see
``schemas/login_ticket.py``), sets the hub's login cookie for the ticket's
user and redirects to the ticket's page on that user's server, whose own
OAuth flow with the hub then sets the server's cookie. Three traps avoided:

- the ticket is marked used and its previous state read in one atomic
  update, then refused unless it was unused and ``expires_at`` is still ahead
  (the upstream example's comparison is inverted);
- a browser already logged in as another user is logged out first, so the
  ticket's user always wins (the stock login handler would skip
  authentication for an existing session);
- failures answer 403 without raising ``HTTPError``, whose tornado warning
  line would log the full query string, ticket included.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from pymongo import AsyncMongoClient, ReturnDocument
from traitlets import Unicode

from schemas.login_ticket import COLLECTION, QUERY_PARAMETER, token_digest

REFUSED_PAGE = """<!doctype html><title>Link expired</title>
<p>This notebook link has expired or was already used.
Open the notebook again from the application.</p>"""


class TicketLoginHandler(BaseHandler):  # type: ignore[misc]
    """Redeem a login ticket and continue to the notebook it was issued for."""

    async def get(self) -> None:
        token = self.get_argument(QUERY_PARAMETER, default="")
        ticket = await self.authenticator.redeem(token) if token else None
        if ticket is None:
            self.set_status(403)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(REFUSED_PAGE)
            return
        current = await self.get_current_user()
        if current is not None and current.name != ticket["hub_user"]:
            self.log.info("replacing hub session of another user with %s", ticket["hub_user"])
            self.clear_login_cookie()
        user = await self.auth_to_user({"name": ticket["hub_user"]})
        self.set_login_cookie(user)
        self._jupyterhub_user = user
        self.redirect(ticket["next_path"])


class TicketAuthenticator(Authenticator):  # type: ignore[misc]
    """Users log in only through tickets; there is no login form."""

    auto_login = True
    mongodb_uri = Unicode(config=True, help="MongoDB holding the login tickets.")
    mongodb_database = Unicode("nbembed", config=True)
    mongodb_username = Unicode(None, allow_none=True, config=True, help="The hub's store user.")
    mongodb_password_file = Unicode(
        None, allow_none=True, config=True, help="File with that user's password."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    def _tickets(self) -> Any:
        if self._client is None:
            # The hub's own store user may read and mark login tickets, nothing else.
            credentials: dict[str, Any] = {}
            if self.mongodb_username and self.mongodb_password_file:
                password = Path(self.mongodb_password_file).read_text().strip()
                credentials = {"username": self.mongodb_username, "password": password}
            self._client = AsyncMongoClient(
                self.mongodb_uri, serverSelectionTimeoutMS=5000, tz_aware=True, **credentials
            )
        return self._client[self.mongodb_database][COLLECTION]

    async def redeem(self, token: str) -> dict[str, Any] | None:
        """The ticket for ``token`` if it is unused and unexpired, now marked used; else None."""
        now = datetime.now(UTC)
        # Marking used and reading the state before are one atomic step, so of two
        # concurrent redemptions only one sees the ticket unused. The filter is
        # _id alone (FerretDB's SQLite backend scans for anything else); the rest
        # is checked on the document as it was.
        ticket: dict[str, Any] | None = await self._tickets().find_one_and_update(
            {"_id": token_digest(token)},
            {"$set": {"used_at": now}},
            return_document=ReturnDocument.BEFORE,
        )
        if ticket is None or ticket.get("used_at") is not None or ticket["expires_at"] <= now:
            self.log.warning("refused a login ticket: unknown, used or expired")
            return None
        return ticket

    def login_url(self, base_url: str) -> str:
        return str(url_path_join(base_url, "nbembed/login"))

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [(r"/nbembed/login", TicketLoginHandler)]

    async def authenticate(self, handler: Any, data: Any) -> None:
        # No form and no other way in: logins happen only in TicketLoginHandler.
        return None
