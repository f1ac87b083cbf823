"""Login tickets for iframe URLs (contract in ``schemas/login_ticket.py``).

The gateway issues a fresh single-use ticket each time it hands a host the
iframe URL of a ready session, so the credential is born at the moment of use
and expires before it could be reused: it lives in the host's HTTPS response
and one browser navigation, never on Kafka, and MongoDB keeps only its hash.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from pymongo import ASCENDING, AsyncMongoClient

from schemas.login_ticket import (
    COLLECTION,
    LOGIN_PATH,
    QUERY_PARAMETER,
    LoginTicket,
    new_token,
    token_digest,
)


class TicketIssuer:
    """Issues tickets and removes expired ones (FerretDB has no TTL indexes)."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        public_hub_url: str,
        ttl_seconds: float,
    ) -> None:
        self._tickets = client[database][COLLECTION]
        self._public_hub_url = public_hub_url.rstrip("/")
        self._ttl = timedelta(seconds=ttl_seconds)
        self._next_cleanup = 0.0

    async def ensure_indexes(self) -> None:
        """Index expiry, for the clean-up."""
        await self._tickets.create_index([("expires_at", ASCENDING)])

    async def login_url(self, hub_user: str, page_url: str) -> str:
        """A URL that logs the browser in as ``hub_user`` once and opens ``page_url``.

        ``page_url`` must be a page of that user's server; only its path is kept,
        so the redirect after login can never leave the hub.
        """
        page = urlsplit(page_url)
        next_path = page.path + (f"?{page.query}" if page.query else "")
        if not next_path.startswith(f"/user/{hub_user}/"):
            raise ValueError(f"{page_url} is not a page of {hub_user}'s server")
        now = datetime.now(UTC)
        token = new_token()
        ticket = LoginTicket(
            digest=token_digest(token),
            hub_user=hub_user,
            next_path=next_path,
            expires_at=now + self._ttl,
        )
        await self._tickets.insert_one(ticket.model_dump(by_alias=True))
        if time.monotonic() >= self._next_cleanup:
            # Tickets are kept an hour after expiry for audit, then removed.
            self._next_cleanup = time.monotonic() + 60
            await self._tickets.delete_many({"expires_at": {"$lt": now - timedelta(hours=1)}})
        return f"{self._public_hub_url}{LOGIN_PATH}?{urlencode({QUERY_PARAMETER: token})}"
