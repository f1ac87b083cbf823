"""The single-user server's audit reporter (infra/hub/singleuser_python/nbembed_audit.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import queue
import sys
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import jupyter_server
import pytest
from jupyter_events import EventLogger

from schemas import SERVER_REPORTED_KINDS

MODULE = Path(__file__).parents[2] / "infra" / "hub" / "singleuser_python" / "nbembed_audit.py"


@pytest.fixture
def reporter(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nbembed_audit_under_test", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setenv("NBEMBED_GATEWAY_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setattr(module, "_ensure_worker", lambda: None)  # nothing is sent
    return module


def test_the_server_reports_exactly_the_kinds_the_gateway_accepts(reporter: ModuleType) -> None:
    assert tuple(reporter.KINDS) == SERVER_REPORTED_KINDS


def test_reports_are_bounded_and_unknown_kinds_never_leave(reporter: ModuleType) -> None:
    assert reporter.report_audit("session.ended") is False
    detail = {f"key{i}": "v" * 10_000 for i in range(100)}
    assert reporter.report_audit("download.refused", detail) is True
    report = reporter._queue.get_nowait()
    assert report["kind"] == "download.refused"
    assert len(report["detail"]) == 16
    assert all(len(v) == 512 for v in report["detail"].values())
    assert len(report["report_id"]) == 32


def test_a_flood_of_reports_is_dropped_not_queued(reporter: ModuleType) -> None:
    accepted = [reporter.report_audit("kernel.started", {"i": str(i)}) for i in range(1000)]
    assert accepted.count(True) == reporter.QUEUE_SIZE
    assert reporter._queue.qsize() == reporter.QUEUE_SIZE


def test_without_a_gateway_nothing_is_queued(
    reporter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBEMBED_GATEWAY_URL")
    assert reporter.report_audit("kernel.started") is False
    with pytest.raises(queue.Empty):
        reporter._queue.get_nowait()


async def test_a_kernel_start_from_jupyter_servers_event_bus_is_reported(
    reporter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        reporter, "report_audit", lambda kind, detail: reports.append((kind, detail))
    )
    events = EventLogger()
    app = SimpleNamespace(event_logger=events, log=logging.getLogger("test"))
    reporter._load_jupyter_server_extension(app)  # before the kernel manager registers the schema
    schemas = Path(jupyter_server.__file__).parent / "event_schemas"
    events.register_event_schema(schemas / "kernel_actions" / "v1.yaml")
    for action, status in (("start", "success"), ("start", "error"), ("shutdown", "success")):
        data = {"action": action, "status": status, "msg": "m", "kernel_name": "python3"}
        if status == "success":
            data["kernel_id"] = "k1"
        events.emit(schema_id=reporter.KERNEL_ACTIONS, data=data)
    await asyncio.sleep(0.05)  # listeners run as tasks
    assert reports == [("kernel.started", {"kernel_id": "k1", "kernel_name": "python3"})]
    assert reporter._jupyter_server_extension_points() == [{"module": "nbembed_audit"}]


def test_a_stopping_server_waits_for_the_queued_reports_to_be_sent(
    reporter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    release = threading.Event()

    def send(http: Any, report: dict[str, Any]) -> None:
        release.wait(5)
        sent.append(report["kind"])

    monkeypatch.setattr(reporter, "_send", send)
    assert reporter.report_audit("kernel.started")
    threading.Thread(target=reporter._run, daemon=True).start()
    assert reporter.wait_sent(0.05) is False  # still being sent
    release.set()
    assert reporter.wait_sent(5) is True
    assert sent == ["kernel.started"]
