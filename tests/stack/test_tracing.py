"""One connected trace per session and per save, across gateway, Kafka, provisioner and sync.

The stack's services write the spans they record as JSON lines in
``<state_dir>/traces`` and record only traces a caller asks for (a sampled W3C
``traceparent``, infra/settings.py ``trace_sample_ratio=0``), so the test acts
as the host: it sends its own traceparent and reads back every span of that
trace, from every replica's file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import httpx
import pytest

from infra.settings import StackSettings
from schemas import NotebookSaved, NotebookStored, ServerReady, SessionReady, SessionRequested
from tests.stack.helpers import eventually, open_session, wait_for_final_status
from tests.stack.tracing_helpers import HostTrace, Span, service_of, url_of

pytestmark = pytest.mark.stack

SERVICES = {"nbembed-gateway", "nbembed-provisioner", "nbembed-sync"}


def _has(spans: Iterable[Span], service: str, name: str = "", url: str = "") -> bool:
    return any(
        service_of(s) == service
        and name in s["name"]
        and url in url_of(s)
        and (not url or s["kind"] == "SpanKind.CLIENT")
        for s in spans
    )


def assert_one_connected_trace(
    host: HostTrace, spans: list[Span], request: str, services: set[str]
) -> None:
    """Every span is in the host's trace and its parents chain up to the host's request."""
    assert all(s["context"]["trace_id"] == f"0x{host.trace_id}" for s in spans)
    roots = [s for s in spans if s["parent_id"] == f"0x{host.span_id}"]
    assert [(service_of(r), r["name"]) for r in roots] == [("nbembed-gateway", request)]
    orphans = _orphans(host, spans)
    assert not orphans, f"spans whose parent is in no service's trace: {orphans}"
    assert services <= {service_of(s) for s in spans} <= SERVICES


def _orphans(host: HostTrace, spans: list[Span]) -> list[str]:
    """Names of spans whose parent is neither the host's request nor a recorded span."""
    ids = {s["context"]["span_id"] for s in spans} | {f"0x{host.span_id}"}
    return [s["name"] for s in spans if s["parent_id"] not in ids]


async def _traced(
    settings: StackSettings, host: HostTrace, *expected: tuple[str, ...]
) -> list[Span]:
    """The trace's spans once all ``expected`` (service, name, url) have been recorded.

    A span is written when it ends, so a child is seen before its parent: the
    trace is complete only once every recorded parent has ended too (a consumer
    still handling its message has already written its store call).
    """

    seen: list[Span] = []

    async def complete() -> bool:
        seen[:] = host.spans(settings)
        return all(_has(seen, *wanted) for wanted in expected) and not _orphans(host, seen)

    try:
        await eventually(complete, timeout=60, interval=0.5)
    except TimeoutError:
        spans = host.spans(settings)
        missing = [wanted for wanted in expected if not _has(spans, *wanted)]
        names = sorted({(service_of(s), s["name"]) for s in spans})
        orphans = _orphans(host, spans)
        raise AssertionError(
            f"missing {missing}; spans whose parent is in no service's trace: {orphans}; "
            f"recorded {names}"
        ) from None
    return seen  # as checked: spans recorded later may still be unfinished children


async def test_a_session_is_one_trace_from_the_hosts_request_to_the_gateways_projection(
    gateway: httpx.AsyncClient, running_stack: StackSettings
) -> None:
    host = HostTrace()
    created = await gateway.post(
        "/v1/sessions",
        json={"user_id": f"traced-{uuid.uuid4().hex}", "notebook_name": "traced"},
        headers=host.headers,
    )
    assert created.status_code == 202, created.text
    session = await wait_for_final_status(gateway, created.json()["id"])  # untraced polls
    assert session["status"] == "ready", session
    spans = await _traced(
        running_stack,
        host,
        ("nbembed-gateway", f"{SessionRequested.topic} publish"),
        ("nbembed-provisioner", f"{SessionRequested.topic} process"),
        ("nbembed-provisioner", "", "/hub/api/users/"),  # hub calls
        ("nbembed-sync", f"{ServerReady.topic} process"),
        ("nbembed-sync", "", "/api/contents/"),  # the notebook put in place
        ("nbembed-gateway", f"{SessionReady.topic} process"),  # the projection
        ("nbembed-gateway", "update"),  # ... writing the session's status (PyMongo)
    )
    assert_one_connected_trace(host, spans, "POST /v1/sessions", SERVICES)


async def test_a_save_is_one_trace_from_the_hosts_request_to_the_stored_status(
    gateway: httpx.AsyncClient, running_stack: StackSettings
) -> None:
    session = await open_session(
        gateway, user_id=f"traced-{uuid.uuid4().hex}", notebook_name="traced save"
    )
    assert session["status"] == "ready", session
    host = HostTrace()
    requested = await gateway.post(f"/v1/sessions/{session['id']}/saves", headers=host.headers)
    assert requested.status_code == 202, requested.text
    outcome = await gateway.get(f"/v1/saves/{requested.json()['id']}", params={"wait": 30})
    assert outcome.json()["status"] == "stored", outcome.text
    spans = await _traced(
        running_stack,
        host,
        ("nbembed-gateway", f"{NotebookSaved.topic} publish"),
        ("nbembed-sync", f"{NotebookSaved.topic} process"),
        ("nbembed-sync", "", "/api/contents/"),  # the saved content fetched
        # ... compared with the stored revisions (PyMongo; an unchanged notebook, as
        # here where the server's own save hook may have stored it first, adds none)
        ("nbembed-sync", "nbembed_sync.find"),
        ("nbembed-gateway", f"{NotebookStored.topic} process"),  # the save's status
    )
    # The provisioner appears only when sync asks it for a fresh server token.
    assert_one_connected_trace(
        host, spans, "POST /v1/sessions/{session_id}/saves", {"nbembed-gateway", "nbembed-sync"}
    )
