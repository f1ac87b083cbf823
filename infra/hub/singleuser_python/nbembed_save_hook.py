"""Reports every notebook save a single-user server makes to nbembed's gateway.

Installed as ``ContentsManager.post_save_hook`` by the hub's spawner args, so
autosave, Ctrl-S and the bridge's saves are stored even when no host page is
open. The report is authenticated with the server's own hub API token
(``JUPYTERHUB_API_TOKEN``), which the gateway checks with the hub. It is sent
from a background thread, so a slow gateway never slows a save down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime
from typing import Any

import httpx

log = logging.getLogger("nbembed.save_hook")

REPORTER_THREAD = "nbembed-save"


def report_save(model: dict[str, Any], os_path: str, contents_manager: Any, **_: Any) -> None:
    """The post-save hook: hand a notebook save to a reporter thread."""
    gateway = os.environ.get("NBEMBED_GATEWAY_URL")
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if model.get("type") != "notebook" or not gateway or not token:
        return
    report = {"path": model["path"]}
    # The timestamp Jupyter answers to the save names it: the host page's SDK hears
    # the same one from the bridge and asks the gateway for this save's revision.
    modified = model.get("last_modified")
    if isinstance(modified, datetime):
        report["last_modified"] = modified.isoformat()
    threading.Thread(
        target=_send, args=(gateway, token, report), name=REPORTER_THREAD, daemon=True
    ).start()


def wait_sent(timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the reports still being sent.

    The server's launcher calls it as the server stops (nbembed_singleuser.py):
    a save made just before a session ended is still reported.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == REPORTER_THREAD:
            thread.join(max(0.0, deadline - time.monotonic()))


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    """One client for every report of this server, with kept-alive connections.

    A new client per report cost 10-40 ms of CPU (its TLS context, measured) on every
    server at once when twenty saved together. httpx's Client is thread-safe, and it
    holds no credential: each report sends its own header.
    """
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(timeout=10)
        return _client


def _send(gateway: str, token: str, report: dict[str, str], attempts: int = 5) -> None:
    path = report["path"]
    delay = 0.5
    for _ in range(attempts):
        try:
            response = _http().post(
                f"{gateway.rstrip('/')}/internal/server-saves",
                json=report,
                headers={"Authorization": f"token {token}"},
            )
            if response.status_code < 500:
                if response.status_code >= 400:
                    log.warning(
                        "gateway refused save report for %s: %s", path, response.status_code
                    )
                return
        except httpx.HTTPError as exc:
            log.info("gateway unreachable (%s), retrying save report for %s", exc, path)
        time.sleep(delay)
        delay *= 2
    log.warning("could not report the save of %s to nbembed", path)
