"""The provisioner's client for the JupyterHub REST API (the only module that calls it)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

import httpx
from prometheus_client import Counter, Histogram

from schemas.profiles import Profile, server_options_of
from schemas.server_token import server_scope

log = logging.getLogger(__name__)

HUB_BUSY = Counter(
    "nbembed_hub_busy",
    "The hub's 429 answers to a server start (over its concurrent_spawn_limit); each is "
    "waited out (Retry-After) and asked again.",
)
SPAWN_SECONDS = Histogram(
    "nbembed_hub_spawn_seconds",
    "From the server start the hub accepted (201/202) to the server ready; waits on 429s "
    "are not counted (nbembed_hub_busy_total counts them).",
    buckets=(0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 60, 120),
)


class HubError(Exception):
    """The hub refused or failed a request; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SpawnFailed(HubError):
    """The hub reported that the user's server failed to start."""


@dataclass(frozen=True)
class RunningServer:
    """A user's ready default server, as the hub reports it."""

    path: str
    restricted: bool
    """Started with ``user_options.restricted`` (restricted-data mode)."""
    instance: str | None = None
    """The nonce this server was started with (``user_options.instance``): which server
    it is, so the notice of its stop is never taken for a later server's."""
    profile: str | None = None
    """The profile it was started with (``user_options.profile``), None for none."""
    server_options: tuple[tuple[str, object], ...] = ()
    """Its profile's server options (limits, image), sorted: what a session's profile must
    match to share it."""


@dataclass(frozen=True)
class ServerState:
    """A user's default server as the hub reports it, ready or not."""

    ready: RunningServer | None
    pending: str | None
    """"spawn" or "stop" while the hub is starting or stopping it, else None."""
    instance: str | None


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
        if response.status_code == 404:
            # JupyterHub never answers 404 to creating a user; its proxy does while a
            # restarting hub has not routed /hub yet (seen: "[ConfigProxy] 404 POST
            # /hub/api/users/…"). Unreachable (status 0), so it is retried.
            raise HubError(f"hub unreachable: the proxy has no route to it yet (404, {name})")
        raise HubError(
            f"creating user {name}: {response.status_code} {response.text}", response.status_code
        )

    async def ensure_server(
        self,
        name: str,
        *,
        deadline_seconds: float,
        restricted: bool = False,
        profile: Profile | None = None,
        busy_seconds: float | None = None,
    ) -> RunningServer:
        """Start ``name``'s default server unless it runs; wait until it is ready.

        Returns the ready server. Answers handled: 201 (started and ready),
        202 (starting: follow the progress stream), 400 (already running or still
        starting; or still stopping, e.g. culled a moment ago: wait until it
        stopped and start it again), 429 (too many spawns: wait Retry-After,
        then ask again). ``restricted`` and a new ``instance`` nonce travel as
        the spawn's ``user_options`` (always sent, so the hub never falls back
        to the previous spawn's options), with the ``profile``'s fields; the
        hub's config turns them into the server's arguments and traits.

        Waiting out 429s does not count against ``deadline_seconds``, which runs
        from the hub's acceptance: the hub is alive, only busy with other users'
        spawns, and a burst of a hundred new users at the hub's limit keeps some
        waiting for minutes (with the 120 s deadline counted from the first
        request, one in a hundred failed). ``busy_seconds`` (default: the
        deadline) bounds that wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_seconds
        busy = deadline_seconds if busy_seconds is None else busy_seconds
        busy_until = loop.time() + busy
        options = {"restricted": restricted, "instance": uuid.uuid4().hex}
        body = {"user_options": {**options, **(profile.user_options() if profile else {})}}
        while True:
            asked = loop.time()  # a 201 comes once the server is ready: time from the ask
            response = await self._request("POST", f"/users/{quote(name)}/server", json=body)
            if response.status_code == 400 and "pending stop" in response.text:
                await self.wait_stopped(name, timeout=max(1.0, deadline - loop.time()))
                continue
            if response.status_code == 429:
                HUB_BUSY.inc()
                wait = float(response.headers.get("Retry-After", "5"))
                wait = min(wait, max(0.0, busy_until - loop.time()))
                if wait <= 0:
                    raise HubError(
                        f"hub busy spawning others; {name} not started within {busy:.0f}s", 429
                    )
                log.info("hub spawn limit reached, waiting", extra={"user": name, "wait": wait})
                await asyncio.sleep(wait)
                continue
            if response.status_code in (201, 202, 400):
                break
            raise HubError(
                f"starting server for {name}: {response.status_code} {response.text}",
                response.status_code,
            )
        deadline = loop.time() + deadline_seconds
        if response.status_code != 201:
            await self._follow_progress(name, timeout=max(1.0, deadline - loop.time()))
        server = await self.ready_server(name)
        if server is None:
            raise HubError(f"server for {name} is not running", 409)
        if response.status_code != 400:  # 400: started by an earlier request, not timed here
            SPAWN_SECONDS.observe(loop.time() - asked)
        return server

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

    async def server_state(self, name: str) -> ServerState | None:
        """``name``'s default server, ready or pending; None when it has none (or no user).

        One GET: the fast path for a returning user whose server already runs.
        """
        response = await self._request("GET", f"/users/{quote(name)}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HubError(f"reading user {name}: {response.status_code}", response.status_code)
        server = response.json().get("servers", {}).get("")
        if not server:
            return None
        options = server.get("user_options") or {}
        instance = options.get("instance") if isinstance(options.get("instance"), str) else None
        ready = None
        if server.get("ready"):
            # With per-user origins (subdomain_host) the hub gives the full URL on the
            # user's own host; the path is the same in both modes.
            path: str = urlsplit(server["url"]).path
            profile = options.get("profile")
            ready = RunningServer(
                path=path,
                restricted=options.get("restricted") is True,
                instance=instance,
                profile=profile if isinstance(profile, str) else None,
                server_options=server_options_of(options),
            )
        return ServerState(ready=ready, pending=server.get("pending"), instance=instance)

    async def ready_server(self, name: str) -> RunningServer | None:
        """``name``'s default server if it runs and is ready, else None."""
        state = await self.server_state(name)
        return state.ready if state else None

    async def ready_server_path(self, name: str) -> str | None:
        """The URL path of ``name``'s default server if it runs and is ready, else None."""
        server = await self.ready_server(name)
        return server.path if server else None

    async def server_path(self, name: str) -> str:
        """The URL path of ``name``'s ready default server; HubError if it is not ready."""
        path = await self.ready_server_path(name)
        if path is None:
            raise HubError(f"server for {name} is not running", 409)
        return path

    async def forget_user(self, name: str, *, stop_wait: float = 30.0) -> None:
        """Stop ``name``'s server and delete the hub user with every credential (idempotent).

        Deleting the user is the hub API's one way to end a browser's access:
        its OAuth tokens go with the user, and the hub login cookie names the
        user's ``cookie_id``, which the user created next time gets anew. The
        OS account and home stay (the spawner keeps them). A server still
        stopping answers 400; wait for it, at most ``stop_wait`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + stop_wait
        while True:
            response = await self._request("DELETE", f"/users/{quote(name)}")
            if response.status_code in (204, 404):
                return
            if response.status_code != 400 or loop.time() > deadline:
                raise HubError(
                    f"deleting hub user {name}: {response.status_code} {response.text[:200]}",
                    response.status_code,
                )
            await asyncio.sleep(0.5)  # "in the process of stopping"

    async def wait_stopped(self, name: str, *, timeout: float) -> None:
        """Wait until ``name`` has no default server (a stop the hub answered 202 to)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            response = await self._request("GET", f"/users/{quote(name)}")
            if response.status_code == 404:
                return
            if response.status_code != 200:
                raise HubError(f"reading user {name}: {response.status_code}", response.status_code)
            if "" not in response.json().get("servers", {}):
                return
            if loop.time() > deadline:
                raise HubError(f"server for {name} did not stop within {timeout:.0f}s")
            await asyncio.sleep(0.2)

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
        expires and carries all the user's scopes (measured on JupyterHub 6).
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
