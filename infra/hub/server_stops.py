"""Tell nbembed's provisioner whenever a user's server stops, and who stopped it.

Every stop in JupyterHub 6.1, whatever its cause, ends in ``User.stop``,
which runs ``Spawner.post_stop_hook``: stops through the REST API (the idle
culler, an admin in the control panel, nbembed's provisioner) go through
``BaseHandler.stop_single_user``; a server whose process died is found by the
spawner's poll (every ``Spawner.poll_interval`` seconds, or at the next API
call about it) and stopped by the hub's poll callback; the hub's own shutdown
(``cleanup_servers``) calls ``User.stop`` from ``JupyterHub.cleanup``. The
hook itself is not told why, so `install` wraps the two entry points that
have a reason to set a context variable, which the stop task inherits
(``asyncio.ensure_future`` copies the context): unset means nobody asked,
i.e. the process died.

The hook posts ``{hub_user, instance, cause, detail}`` to the provisioner
(``POST /internal/hub/server-stopped``) with a token only the hub and the
provisioner hold. It runs in the hub process alone: nothing here reaches a
single-user server's environment. Delivery is best effort (a few retries in
the background, so a stop never waits for nbembed); the provisioner's
periodic reconciliation against the hub API catches a lost notification.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

log = logging.getLogger("JupyterHub.nbembed")

_requested_by: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "nbembed_stop_requested_by", default=None
)
HUB_SHUTDOWN = ("hub", "shutdown")


def cause_of(requester: tuple[str, str] | None, *, culler: str, nbembed: str) -> tuple[str, str]:
    """(cause, detail) of a stop asked by ``requester`` (kind, name), or by nobody."""
    if requester is None:
        return "crashed", "the server's process ended without a stop request"
    kind, name = requester
    if requester == HUB_SHUTDOWN:
        return "stopped", "JupyterHub stopped it while shutting down"
    if kind == "service" and name == culler:
        return "culled", "the idle culler stopped it"
    if kind == "service" and name == nbembed:
        return "nbembed", "nbembed's provisioner stopped it"
    return "stopped", f"stopped through the hub by {kind} {name}"


def install() -> None:
    """Record who asks for each stop (the REST API's handler, the hub's shutdown)."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.handlers.base import BaseHandler

    if getattr(BaseHandler.stop_single_user, "_nbembed", False):
        return
    stop_single_user = BaseHandler.stop_single_user
    cleanup = JupyterHub.cleanup

    async def recorded_stop(self: Any, user: Any, server_name: str = "") -> Any:
        who = self.current_user
        _requested_by.set((getattr(who, "kind", "user"), getattr(who, "name", "?")))
        return await stop_single_user(self, user, server_name)

    async def recorded_cleanup(self: Any) -> Any:
        _requested_by.set(HUB_SHUTDOWN)
        return await cleanup(self)

    recorded_stop._nbembed = True  # type: ignore[attr-defined]
    BaseHandler.stop_single_user = recorded_stop
    JupyterHub.cleanup = recorded_cleanup


def post_stop_hook(
    provisioner_url: str,
    token: str,
    *,
    culler: str = "idle-culler",
    nbembed: str = "nbembed",
    attempts: int = 4,
) -> Callable[[Any], Awaitable[None]]:
    """``c.Spawner.post_stop_hook``: notify the provisioner in the background."""
    url = provisioner_url.rstrip("/") + "/internal/hub/server-stopped"
    tasks: set[asyncio.Task[None]] = set()

    async def notify(body: dict[str, Any]) -> None:
        delay = 0.5
        async with httpx.AsyncClient(timeout=5.0) as client:
            for attempt in range(1, attempts + 1):
                try:
                    response = await client.post(
                        url, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                    if response.status_code == 204:
                        return
                    problem = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if attempt == attempts:
                    log.warning("nbembed: server stop of %s not delivered: %s", body, problem)
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def hook(spawner: Any) -> None:
        cause, detail = cause_of(_requested_by.get(), culler=culler, nbembed=nbembed)
        if cause == "crashed":
            try:
                status = await spawner.poll()
            except Exception:  # the status is a detail only
                status = None
            if status is not None:
                detail = f"{detail} (exit status {status})"
        options = spawner.user_options if isinstance(spawner.user_options, dict) else {}
        instance = options.get("instance")
        body = {
            "hub_user": spawner.user.name,
            "instance": instance if isinstance(instance, str) else None,
            "cause": cause,
            "detail": detail[:500],
        }
        log.info("nbembed: %s's server stopped (%s: %s)", spawner.user.name, cause, detail)
        task = asyncio.ensure_future(notify(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return hook
