"""Reports facts that happen only inside a single-user server to nbembed's audit trail.

Two parts:

- `report_audit(kind, detail)`: anything running in the server (this module's
  kernel listener, a restricted-mode Authorizer refusing a download, ...) calls it
  to report one fact. It never blocks or raises: reports go through a bounded
  queue to one background thread, which posts them to the gateway
  (``POST /internal/audit-reports``) with the server's own hub API token
  (``JUPYTERHUB_API_TOKEN``), as the save hook does. The gateway takes the user
  and tenant from that token, never from the report.
- A Jupyter Server extension (``--ServerApp.jpserver_extensions=nbembed_audit=True``
  in the hub's spawner args) that listens to Jupyter Server's own
  ``kernel_actions`` events and reports every kernel that started.

The kinds a server may report are a fixed list (`KINDS`, the same as
``schemas.SERVER_REPORTED_KINDS``, which this module cannot import: it runs in
the user's server, not in nbembed's services).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from typing import Any

import httpx

log = logging.getLogger("nbembed.audit")

KINDS = ("kernel.started", "download.refused")
"""What a server may report: facts only the user's server sees."""

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
QUEUE_SIZE = 100
"""Reports waiting to be sent; beyond that new ones are dropped (and logged), never queued."""
DETAIL_KEYS = 16
DETAIL_CHARS = 512

_queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=QUEUE_SIZE)
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def report_audit(kind: str, detail: dict[str, Any] | None = None) -> bool:
    """Report one fact to nbembed's audit trail, in the background.

    ``detail`` is a few short facts (string keys; values are turned into
    strings and cut to the contract's bounds). Returns False when the report
    was not queued: an unknown kind, no gateway configured, or a full queue.
    """
    if kind not in KINDS:
        log.warning("not an audit kind a server may report: %r", kind)
        return False
    if not os.environ.get("NBEMBED_GATEWAY_URL") or not os.environ.get("JUPYTERHUB_API_TOKEN"):
        return False
    report = {"kind": kind, "detail": _bounded(detail or {}), "report_id": uuid.uuid4().hex}
    try:
        _queue.put_nowait(report)
    except queue.Full:
        log.warning("audit queue full, dropped a %s report", kind)
        return False
    _ensure_worker()
    return True


def _bounded(detail: dict[str, Any]) -> dict[str, str]:
    return {str(k)[:32]: str(v)[:DETAIL_CHARS] for k, v in list(detail.items())[:DETAIL_KEYS]}


def _ensure_worker() -> None:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_run, name="nbembed-audit", daemon=True)
            _worker.start()


def _run() -> None:
    with httpx.Client(timeout=10) as http:
        while True:
            try:
                _send(http, _queue.get())
            finally:
                _queue.task_done()


def wait_sent(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the queued reports to be sent (or given up).

    The server's launcher calls it as the server stops (nbembed_singleuser.py).
    """
    with _queue.all_tasks_done:
        return _queue.all_tasks_done.wait_for(lambda: _queue.unfinished_tasks == 0, timeout)


def _send(http: httpx.Client, report: dict[str, Any], attempts: int = 5) -> None:
    gateway = os.environ["NBEMBED_GATEWAY_URL"].rstrip("/")
    headers = {"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"}
    delay = 0.5
    for _ in range(attempts):
        try:
            response = http.post(f"{gateway}/internal/audit-reports", json=report, headers=headers)
            if response.status_code == 429:
                delay = float(response.headers.get("Retry-After", delay))
            elif response.status_code < 500:
                if response.status_code >= 400:
                    log.warning("gateway refused an audit report: %s", response.status_code)
                return
        except httpx.HTTPError as exc:
            log.info("gateway unreachable (%s), retrying an audit report", exc)
        time.sleep(min(delay, 30))
        delay *= 2
    log.warning("could not report a %s to nbembed's audit trail", report["kind"])


async def _on_kernel_action(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
    """A ``kernel_actions`` event (jupyter_events calls listeners with these keywords)."""
    if data.get("action") == "start" and data.get("status") == "success":
        report_audit(
            "kernel.started",
            {"kernel_id": data.get("kernel_id", ""), "kernel_name": data.get("kernel_name", "")},
        )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbembed_audit"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Listen to the server's kernel events (Jupyter Server 2's event bus)."""
    serverapp.event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=_on_kernel_action)
    serverapp.log.info("nbembed audit: reporting kernel starts")
