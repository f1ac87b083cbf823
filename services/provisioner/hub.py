"""The provisioner's client for the JupyterHub REST API (the only module that calls it)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from urllib.parse import quote, urlsplit

import httpx

from schemas.server_token import server_scope

log = logging.getLogger(__name__)


class HubError(Exception):
    """The hub refused or failed a request; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SpawnFailed(HubError):
    """The hub reported that the user's server failed to start."""


class HubClient:
    """Users and servers through the hub's API, authenticated with the service token."""

    def __init__(self, hub_url: str, api_token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=hub_url.rstrip("/") + "/hub/api",
            headers={"Authorization": f"token {api_token}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise HubError(f"hub unreachable: {type(exc).__name__}: {exc}") from exc

    async def whoami(self) -> dict[str, object]:
        """The identity the token stands for (a service model for the service token)."""
        response = await self._request("GET", "/user")
        if response.status_code != 200:
            raise HubError(
                f"token refused by the hub ({response.status_code})", response.status_code
            )
        data: dict[str, object] = response.json()
        return data

    async def ensure_user(self, name: str) -> bool:
        """Create hub user ``name`` unless it exists; True when it was created now."""
        response = await self._request("POST", f"/users/{quote(name)}")
        if response.status_code == 201:
            return True
        if response.status_code == 409:  # already exists: the idempotent case
            return False
        raise HubError(
            f"creating user {name}: {response.status_code} {response.text}", response.status_code
        )

    async def ensure_server(self, name: str, *, deadline_seconds: float) -> str:
        """Start ``name``'s default server unless it runs; wait until it is ready.

        Returns the server's URL path. Answers handled: 201 (started and ready),
        202 (starting: follow the progress stream), 400 (already running or still
        starting), 429 (too many spawns: wait Retry-After, then ask again).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_seconds
        while True:
            response = await self._request("POST", f"/users/{quote(name)}/server")
            if response.status_code == 429:
                wait = float(response.headers.get("Retry-After", "5"))
                wait = min(wait, max(0.0, deadline - loop.time()))
                if wait <= 0:
                    raise HubError(f"hub busy spawning others; {name} not started in time", 429)
                log.info("hub spawn limit reached, waiting", extra={"user": name, "wait": wait})
                await asyncio.sleep(wait)
                continue
            if response.status_code in (201, 202, 400):
                break
            raise HubError(
                f"starting server for {name}: {response.status_code} {response.text}",
                response.status_code,
            )
        if response.status_code != 201:
            await self._follow_progress(name, timeout=max(1.0, deadline - loop.time()))
        return await self.server_path(name)

    async def _follow_progress(self, name: str, *, timeout: float) -> None:
        """Read the spawn progress stream until the hub says ready or failed."""
        url = f"/users/{quote(name)}/server/progress"
        try:
            async with (
                asyncio.timeout(timeout),
                self._http.stream("GET", url, timeout=httpx.Timeout(timeout)) as response,
            ):
                if response.status_code != 200:
                    raise HubError(
                        f"progress for {name}: {response.status_code}", response.status_code
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[len("data:") :])
                    if event.get("failed"):
                        raise SpawnFailed(f"server for {name} failed: {event.get('message')}")
                    if event.get("ready"):
                        return
        except TimeoutError as exc:
            raise HubError(f"server for {name} not ready within {timeout:.0f}s") from exc
        except httpx.TransportError as exc:
            raise HubError(f"hub unreachable: {type(exc).__name__}: {exc}") from exc
        # The stream ended without ready/failed: the spawn finished between our
        # POST and the GET, so look at the server itself.
        await self.server_path(name)

    async def ready_server_path(self, name: str) -> str | None:
        """The URL path of ``name``'s default server if it runs and is ready, else None.

        One GET: the fast path for a returning user whose server already runs.
        """
        response = await self._request("GET", f"/users/{quote(name)}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HubError(f"reading user {name}: {response.status_code}", response.status_code)
        server = response.json().get("servers", {}).get("")
        if not server or not server.get("ready"):
            return None
        # With per-user origins (subdomain_host) the hub gives the full URL on the
        # user's own host; the path is the same in both modes.
        path: str = urlsplit(server["url"]).path
        return path

    async def server_path(self, name: str) -> str:
        """The URL path of ``name``'s ready default server; HubError if it is not ready."""
        path = await self.ready_server_path(name)
        if path is None:
            raise HubError(f"server for {name} is not running", 409)
        return path

    async def stop_server(self, name: str) -> None:
        """Stop ``name``'s default server (idempotent)."""
        response = await self._request("DELETE", f"/users/{quote(name)}/server")
        if response.status_code not in (202, 204, 404):
            raise HubError(
                f"stopping server for {name}: {response.status_code}", response.status_code
            )

    async def mint_server_token(
        self, name: str, *, seconds: int, note: str
    ) -> tuple[str, datetime]:
        """A new token of user ``name`` for ``name``'s default server alone, expiring.

        Always with a body: without one the hub mints a token that never
        expires and carries all the user's scopes (FACTS.md).
        """
        response = await self._request(
            "POST",
            f"/users/{quote(name)}/tokens",
            json={"expires_in": seconds, "scopes": [server_scope(name)], "note": note},
        )
        if response.status_code != 201:
            raise HubError(
                f"minting a server token for {name}: {response.status_code}", response.status_code
            )
        body = response.json()
        return body["token"], datetime.fromisoformat(body["expires_at"])

    async def revoke_tokens(self, name: str, *, note: str) -> int:
        """Delete every token of user ``name`` with ``note``; returns how many (idempotent)."""
        response = await self._request("GET", f"/users/{quote(name)}/tokens")
        if response.status_code == 404:
            return 0
        if response.status_code != 200:
            raise HubError(
                f"listing tokens of {name}: {response.status_code}", response.status_code
            )
        ids = [t["id"] for t in response.json()["api_tokens"] if t.get("note") == note]
        for token_id in ids:
            deleted = await self._request(
                "DELETE", f"/users/{quote(name)}/tokens/{quote(token_id)}"
            )
            if deleted.status_code not in (204, 404):
                raise HubError(
                    f"revoking a token of {name}: {deleted.status_code}", deleted.status_code
                )
        return len(ids)
