"""Sync's client for the provisioner's server tokens: one credential per user's server.

Sync never holds the hub service token. Before it calls a user's server it
asks the provisioner for a token of that user, scoped to that user's server
and expiring, and keeps it until shortly before it expires; a server that
refuses a cached token (revoked when the user's last session ended) gets one
fresh token on the retry.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from schemas.server_token import TOKEN_PATH, ServerToken


class ServerTokenError(Exception):
    """No token for this user now; ``status`` is the provisioner's (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ServerTokens:
    """Per-user server tokens from the provisioner, cached until shortly before expiry.

    Concurrent callers for one user share a single request to the provisioner.
    """

    def __init__(
        self,
        provisioner_url: str,
        secret: str,
        *,
        refresh_margin: float = 60,
        timeout: float = 10,
        max_cached: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=provisioner_url.rstrip("/"), timeout=timeout, transport=transport
        )
        self._auth = {"Authorization": f"Bearer {secret}"}
        self._margin = refresh_margin
        self._max_cached = max_cached
        self._cache: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def token_for(self, hub_user: str) -> str:
        """A valid token for ``hub_user``'s server: the cached one or a fresh one."""
        cached = self._cache.get(hub_user)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        pending = self._pending.get(hub_user)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(hub_user))
            self._pending[hub_user] = pending
            pending.add_done_callback(lambda _: self._pending.pop(hub_user, None))
        return await asyncio.shield(pending)

    def forget(self, hub_user: str, token: str) -> None:
        """Drop ``token`` (a server refused it) unless a newer one replaced it already."""
        cached = self._cache.get(hub_user)
        if cached is not None and cached[0] == token:
            del self._cache[hub_user]

    async def _fetch(self, hub_user: str) -> str:
        url = TOKEN_PATH.format(hub_user=quote(hub_user, safe=""))
        try:
            response = await self._http.post(url, headers=self._auth)
        except httpx.TransportError as exc:
            raise ServerTokenError(f"provisioner unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ServerTokenError(
                f"provisioner refused a token for {hub_user}: {response.status_code}",
                response.status_code,
            )
        try:
            issued = ServerToken.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServerTokenError(f"provisioner answered no token: {exc}", 502) from exc
        if issued.hub_user != hub_user:
            raise ServerTokenError(f"provisioner answered a token of {issued.hub_user}", 502)
        lifetime = max(0.0, issued.expires_in - min(self._margin, issued.expires_in / 2))
        self._evict_expired()
        self._cache[hub_user] = (issued.token, time.monotonic() + lifetime)
        return issued.token

    def _evict_expired(self) -> None:
        if len(self._cache) < self._max_cached:
            return
        now = time.monotonic()
        for user in [u for u, (_, until) in self._cache.items() if until <= now]:
            del self._cache[user]
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
