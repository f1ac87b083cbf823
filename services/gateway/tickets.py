"""Login tickets for iframe URLs (contract in ``schemas/login_ticket.py``).

The gateway mints a fresh ticket each time it hands a host the iframe URL of
a ready session, so the credential is born at the moment of use and expires
before it could be reused: it lives in the host's HTTPS response and one
browser navigation, never on Kafka or in a database.

A ticket is ``v1.<claims>.<mac>``: base64url JSON claims (hub user, next path,
session, expiry, nonce) and their HMAC-SHA256 under a key only the gateway
holds. Minting writes nothing. Redeeming (the hub asks, see
``internal_api.py``) checks, in order: the MAC, the expiry, that the path is
the user's own, that the session is still open (tickets die with their
session), and finally inserts the nonce as ``_id`` of ``redeemed_tickets``.
That insert is the one atomic step: of any number of concurrent redemptions
exactly one succeeds, the rest get ``DuplicateKeyError`` (a find-and-modify
is not atomic on FerretDB under concurrency, measured: up to 20 of 20 won).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from schemas.login_ticket import LOGIN_PATH, QUERY_PARAMETER, Redemption, is_own_page
from schemas.naming import user_origin
from services.gateway.store import SessionStore

REDEEMED_COLLECTION = "redeemed_tickets"
VERSION = "v1"
_MAC_CONTEXT = b"nbembed-login-ticket."  # the key signs nothing else
CLEANUP_AFTER = timedelta(minutes=5)
"""Used nonces are kept this long past their ticket's expiry (clock skew between replicas)."""


class TicketRefused(Exception):
    """A ticket that logs nobody in: ``status`` 403 (not ours, tampered) or 410 (spent).

    A spent ticket was signed here, so its user is known (``hub_user``), and
    ``code`` says why (one of ``REFUSAL_CODES``): the hub tells the host page.
    """

    def __init__(
        self, status: int, reason: str, *, code: str | None = None, hub_user: str | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.code = code
        self.hub_user = hub_user


class Claims(BaseModel):
    """What a ticket says; trusted only once its MAC is verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    u: str  # hub user
    p: str  # next path on that user's server
    s: str  # session id
    e: int  # expiry, Unix seconds
    n: str  # nonce: the ticket's identity once redeemed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tickets:
    """Mints signed tickets and redeems each at most once."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        key: bytes,
        public_hub_url: str,
        ttl_seconds: float,
        subdomain_host: str | None = None,
    ) -> None:
        self._redeemed = client[database][REDEEMED_COLLECTION]
        self._key = key
        self._public_hub_url = public_hub_url.rstrip("/")
        self._subdomain_host = subdomain_host
        self._ttl = ttl_seconds
        self._next_cleanup = 0.0

    async def ensure_indexes(self) -> None:
        """Create the collection (before concurrent first inserts) with an expiry index."""
        await self._redeemed.create_index([("expires_at", ASCENDING)])

    def _mac(self, claims: str) -> bytes:
        message = _MAC_CONTEXT + f"{VERSION}.{claims}".encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def mint(self, hub_user: str, next_path: str, session_id: str) -> str:
        """A ticket for ``next_path`` on ``hub_user``'s server, bound to ``session_id``."""
        if not is_own_page(hub_user, next_path):
            raise ValueError(f"{next_path} is not a page of {hub_user}'s server")
        claims = Claims(
            u=hub_user,
            p=next_path,
            s=session_id,
            e=int(time.time() + self._ttl),
            n=secrets.token_urlsafe(16),
        )
        return self.sign(claims)

    def sign(self, claims: Claims) -> str:
        """The ticket carrying ``claims`` (tests sign expired ones with it)."""
        encoded = _b64(claims.model_dump_json().encode())
        return f"{VERSION}.{encoded}.{_b64(self._mac(encoded))}"

    def login_url(self, hub_user: str, page_url: str, session_id: str) -> str:
        """A URL that logs the browser in as ``hub_user`` once and opens ``page_url``.

        ``page_url`` must be a page of that user's server; only its path is kept,
        so the redirect after login can never leave the hub.
        """
        page = urlsplit(page_url)
        next_path = page.path + (f"?{page.query}" if page.query else "")
        ticket = self.mint(hub_user, next_path, session_id)
        return f"{self._public_hub_url}{LOGIN_PATH}?{urlencode({QUERY_PARAMETER: ticket})}"

    def notebook_origin(self, hub_user: str) -> str:
        """The origin where a login for ``hub_user`` ends: their own with per-user origins."""
        if self._subdomain_host:
            return user_origin(hub_user, self._subdomain_host)
        parts = urlsplit(self._public_hub_url)
        return f"{parts.scheme}://{parts.netloc}"

    def verify(self, ticket: str) -> Claims:
        """The claims of a ticket this gateway signed and that has not expired."""
        version, _, rest = ticket.partition(".")
        encoded, _, mac = rest.partition(".")
        try:
            valid = version == VERSION and hmac.compare_digest(_unb64(mac), self._mac(encoded))
            claims = Claims.model_validate_json(_unb64(encoded)) if valid else None
        except (binascii.Error, ValueError, UnicodeEncodeError, ValidationError):
            claims = None
        if claims is None or not is_own_page(claims.u, claims.p):
            raise TicketRefused(403, "not signed by this gateway")
        if claims.e <= time.time():
            raise TicketRefused(410, "expired", code="ticket-expired", hub_user=claims.u)
        return claims

    async def redeem(self, ticket: str, sessions: SessionStore) -> Redemption:
        """Use a ticket: who it logs in and where to; `TicketRefused` if it must not."""
        claims = self.verify(ticket)
        session = await sessions.get_any(claims.s)
        if session is None or session["hub_user"] != claims.u or session["status"] != "ready":
            raise TicketRefused(410, "its session has ended", code="ended", hub_user=claims.u)
        now = datetime.now(UTC)
        try:
            await self._redeemed.insert_one(
                {
                    "_id": claims.n,
                    "session_id": claims.s,
                    "redeemed_at": now,
                    "expires_at": datetime.fromtimestamp(claims.e, UTC),
                }
            )
        except DuplicateKeyError:
            raise TicketRefused(
                410, "already used", code="ticket-used", hub_user=claims.u
            ) from None
        await self._cleanup(now)
        return Redemption(hub_user=claims.u, next_path=claims.p, session_id=claims.s)

    async def _cleanup(self, now: datetime) -> None:
        """Forget used nonces of long-expired tickets (FerretDB has no TTL indexes)."""
        if time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + 60
        await self._redeemed.delete_many({"expires_at": {"$lt": now - CLEANUP_AFTER}})
