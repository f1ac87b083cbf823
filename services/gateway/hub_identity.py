"""Who is calling, according to the hub: verifies single-user servers' own tokens."""

from __future__ import annotations

import hashlib
import time

import httpx


class HubIdentity:
    """Asks the hub whose token this is; remembers answers for a minute.

    Single-user servers report their own saves with their hub API token
    (``JUPYTERHUB_API_TOKEN``); the hub, not the caller, says which user that is.
    """

    def __init__(self, hub_url: str, *, cache_seconds: float = 60) -> None:
        self._http = httpx.AsyncClient(base_url=hub_url.rstrip("/") + "/hub/api", timeout=10)
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._cache_seconds = cache_seconds

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def user_of(self, token: str) -> str | None:
        """The hub user a token belongs to, or None if the hub does not accept it."""
        key = hashlib.sha256(token.encode()).hexdigest()  # never keep tokens in memory maps
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        response = await self._http.get("/user", headers={"Authorization": f"token {token}"})
        name = None
        if response.status_code == 200:
            model = response.json()
            # A server's token identifies as its user (kind "user"); services are refused.
            if model.get("kind") == "user":
                name = model["name"]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._cache_seconds, name)
        return name
