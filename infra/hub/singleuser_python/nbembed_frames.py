"""A Jupyter server extension: only the pages of this user's tenant may frame the server.

Loaded in every single-user server by the spawner
(``--ServerApp.jpserver_extensions=nbembed_frames=True``). The hub starts
every server with one CSP for all tenants; this extension narrows it to the
origins of the tenant this server's user belongs to, as an operator sets them
now (``python -m nbembed.admin tenants set-origins``), and keeps it current:

- at start, before the first page is served, it asks the gateway
  (``GET /internal/frame-ancestors`` with the server's own hub token; the
  gateway asks the hub whose token it is, so a server learns its own tenant's
  origins only) and sets the CSP ``frame-ancestors`` and the bridge's
  ``nbembedAllowedOrigins`` from the answer;
- then it asks again every ``NBEMBED_FRAMES_REFRESH_SECONDS`` (5 s), so a
  changed origin reaches running servers within seconds.

It fails closed: until the gateway has answered, no other site may frame the
server (``frame-ancestors 'self'``), and an answer that is not a list of
origins is ignored. Both settings are read by Jupyter Server and JupyterLab
at each request, so replacing their values in place takes effect at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

ORIGIN = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+")
"""An origin, and nothing that could end or extend a CSP source list."""
PATH = "/internal/frame-ancestors"
_background: set[asyncio.Task[None]] = set()  # referenced, so the loop keeps them alive


def policy(origins: list[str]) -> str:
    """The CSP that lets ``origins`` (and the server itself) frame it."""
    return " ".join(["frame-ancestors", "'self'", *origins])


def apply(settings: dict[str, Any], origins: list[str]) -> None:
    """Make ``origins`` the server's framers: its CSP and the bridge's allowed origins."""
    settings.setdefault("headers", {})["Content-Security-Policy"] = policy(origins)
    settings.setdefault("page_config_data", {})["nbembedAllowedOrigins"] = ",".join(origins)


def parse(body: bytes) -> list[str] | None:
    """The origins in the gateway's answer, or None if it is not a list of origins."""
    try:
        origins = json.loads(body)["origins"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and ORIGIN.fullmatch(o) for o in origins
    ):
        return None
    return origins


async def fetch(gateway: str, token: str) -> list[str] | None:
    """Ask the gateway which origins may frame this server now (None if it did not say)."""
    try:
        response = await AsyncHTTPClient().fetch(
            gateway.rstrip("/") + PATH,
            headers={"Authorization": f"token {token}"},
            request_timeout=5,
        )
    except (HTTPClientError, OSError):
        return None
    return parse(response.body)


async def refresh(serverapp: Any, gateway: str, token: str, interval: float) -> None:
    """Keep the framers current, forever; a failed ask keeps the last answer."""
    settings = serverapp.web_app.settings
    while True:
        await asyncio.sleep(interval)
        origins = await fetch(gateway, token)
        if origins is not None:
            apply(settings, origins)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbembed_frames"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Nothing to load: the work is in the start hook, which may await the gateway.

    Jupyter Server calls the load hook first and, without one, logs a warning and a
    traceback on every server start ("extension failed loading"), though it still
    runs the start hook.
    """


async def _start_jupyter_server_extension(serverapp: Any) -> None:
    """Fail closed, ask once before serving, then keep asking in the background."""
    gateway = os.environ.get("NBEMBED_GATEWAY_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not gateway or not token:
        serverapp.log.warning("nbembed: no gateway configured, framers stay as the hub set them")
        return
    settings = serverapp.web_app.settings
    apply(settings, [])
    origins = await fetch(gateway, token)
    if origins is None:
        serverapp.log.warning("nbembed: the gateway did not name this server's framers yet")
    else:
        apply(settings, origins)
    interval = float(os.environ.get("NBEMBED_FRAMES_REFRESH_SECONDS", "5"))
    task = asyncio.create_task(refresh(serverapp, gateway, token, interval))
    _background.add(task)
