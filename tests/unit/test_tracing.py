"""Trace context from a caller's traceparent through CloudEvents and Kafka to consumers.

services/common/tracing.py on FastStream's in-memory broker with an in-memory
span exporter; the real-stack counterpart is tests/stack/test_tracing.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from schemas import CloudEvent, ServerReady, hub_username
from services.common import tracing
from services.common.kafka import EventConsumer, make_broker, publish_event, publishes
from services.common.settings import ServiceSettings
from services.common.tracing import JsonLinesExporter
from services.gateway.outbox import event_entry, rebuild

SETTINGS = ServiceSettings(dlq_after_attempts=1, retry_backoff_seconds=0.001)
HOST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOST_SPAN = "00f067aa0ba902b7"
HOST_TRACEPARENT = f"00-{HOST_TRACE}-{HOST_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()


def _event(**extra: Any) -> CloudEvent[ServerReady]:
    hub_user = hub_username("demo", "u")
    ready = ServerReady(
        session_id="s1",
        tenant_id="demo",
        hub_user=hub_user,
        server_path=f"/user/{hub_user}/",
        host_user_id="u",
    )
    return CloudEvent[ServerReady](source="/test", type=ready.event_type, data=ready, **extra)


def _in_host_trace() -> object:
    """Attach the context a host's request with HOST_TRACEPARENT gives; returns the token."""
    return otel_context.attach(
        TraceContextTextMapPropagator().extract({"traceparent": HOST_TRACEPARENT})
    )


class Seen:
    """What a consumer's handler saw: the event and the span it ran in."""

    def __init__(self) -> None:
        self.events: list[CloudEvent[ServerReady]] = []
        self.contexts: list[trace.SpanContext] = []

    async def handler(self, event: CloudEvent[ServerReady]) -> None:
        self.events.append(event)
        self.contexts.append(trace.get_current_span().get_span_context())


def _consumer(broker: KafkaBroker) -> Seen:
    seen = Seen()
    consumer = EventConsumer(broker, group_id="g", settings=SETTINGS)
    consumer.on(ServerReady, seen.handler)
    consumer.attach()
    return seen


def _chain_to_host(finished: tuple[ReadableSpan, ...], span_id: int) -> list[str]:
    """Names of the spans from ``span_id`` up to the host's span (which must be reached)."""
    by_id = {span.context.span_id: span for span in finished}
    names = []
    while span_id != int(HOST_SPAN, 16):
        span = by_id[span_id]  # KeyError: the chain breaks before the host's request
        names.append(span.name)
        assert span.parent is not None, f"{span.name} is a root: the chain is broken"
        span_id = span.parent.span_id
    return names


def test_event_carries_trace_context_as_cloudevents_extension_headers() -> None:
    event = _event(traceparent=HOST_TRACEPARENT, tracestate="vendor=1")
    headers = event.kafka_headers()
    assert headers["ce_traceparent"] == HOST_TRACEPARENT
    assert headers["ce_tracestate"] == "vendor=1"
    back = CloudEvent.from_kafka(ServerReady, headers, event.kafka_value())
    assert (back.traceparent, back.tracestate) == (HOST_TRACEPARENT, "vendor=1")


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-" + "0" * 32 + f"-{HOST_SPAN}-01",  # all-zero trace id
        f"00-{HOST_TRACE}-" + "0" * 16 + "-01",  # all-zero span id
        f"ff-{HOST_TRACE}-{HOST_SPAN}-01",  # unknown version
        f"00-{HOST_TRACE.upper()}-{HOST_SPAN}-01",
        HOST_TRACEPARENT + "-" + "x" * 5000,
        "",
    ],
)
def test_invalid_trace_context_is_dropped_from_a_valid_event(traceparent: str) -> None:
    headers = {**_event().kafka_headers(), "ce_traceparent": traceparent}
    back = CloudEvent.from_kafka(ServerReady, headers, _event().kafka_value())
    assert back.traceparent is None  # the event is still handled, outside any trace
    with pytest.raises(ValidationError):
        _event(traceparent=traceparent)


def test_oversized_tracestate_is_dropped() -> None:
    headers = {**_event(traceparent=HOST_TRACEPARENT).kafka_headers(), "ce_tracestate": "a" * 513}
    back = CloudEvent.from_kafka(ServerReady, headers, _event().kafka_value())
    assert (back.traceparent, back.tracestate) == (HOST_TRACEPARENT, None)


async def test_consumer_continues_the_trace_of_the_publishing_request(
    spans: InMemorySpanExporter,
) -> None:
    broker = make_broker(SETTINGS, client_id="test")
    publishes(broker, "test", ServerReady)
    seen = _consumer(broker)
    async with TestKafkaBroker(broker):
        token = _in_host_trace()
        try:
            await publish_event(broker, _event())
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
    [event], [consumed] = seen.events, seen.contexts
    assert event.traceparent is not None and event.traceparent.split("-")[1] == HOST_TRACE
    assert format(consumed.trace_id, "032x") == HOST_TRACE
    chain = _chain_to_host(spans.get_finished_spans(), consumed.span_id)
    assert chain == [f"{ServerReady.topic} process", f"{ServerReady.topic} create"]


async def test_outbox_republish_later_stays_in_the_recording_requests_trace(
    spans: InMemorySpanExporter,
) -> None:
    token = _in_host_trace()
    try:
        [(entry_id, entry)] = event_entry(_event()).items()  # recorded in the request
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
    assert entry["traceparent"] == HOST_TRACEPARENT
    broker = make_broker(SETTINGS, client_id="test")
    publishes(broker, "test", ServerReady)
    seen = _consumer(broker)
    async with TestKafkaBroker(broker):
        # The relay: no request context any more, only the stored entry.
        republished = tracing.with_context(rebuild(entry_id, entry), entry)
        await publish_event(broker, republished)
    [consumed] = seen.contexts
    assert format(consumed.trace_id, "032x") == HOST_TRACE
    _chain_to_host(spans.get_finished_spans(), consumed.span_id)


async def test_cloudevent_context_wins_over_a_traceparent_header_of_another_trace(
    spans: InMemorySpanExporter,
) -> None:
    broker = make_broker(SETTINGS, client_id="test")
    seen = _consumer(broker)
    event = _event(traceparent=HOST_TRACEPARENT)
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    async with TestKafkaBroker(broker):
        await broker.publish(
            event.kafka_value(),
            topic=ServerReady.topic,
            headers={**event.kafka_headers(), "traceparent": other},
        )
    [consumed] = seen.contexts
    assert format(consumed.trace_id, "032x") == HOST_TRACE


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/internal/save")
    @app.get("/v1/save")
    async def save() -> dict[str, str]:
        return {"trace": format(trace.get_current_span().get_span_context().trace_id, "032x")}

    tracing.instrument_app(app, untrusted=lambda scope: scope["path"].startswith("/internal/"))
    return app


async def test_untrusted_callers_traceparent_is_only_linked(spans: InMemorySpanExporter) -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        trusted = await client.get("/v1/save", headers={"traceparent": HOST_TRACEPARENT})
        untrusted = await client.get("/internal/save", headers={"traceparent": HOST_TRACEPARENT})
    assert trusted.json()["trace"] == HOST_TRACE
    assert untrusted.json()["trace"] != HOST_TRACE
    [server] = [
        s
        for s in spans.get_finished_spans()
        if s.kind == trace.SpanKind.SERVER and "internal" in s.name
    ]
    assert server.parent is None  # a new root
    [link] = server.links
    assert format(link.context.trace_id, "032x") == HOST_TRACE


async def test_untrusted_malformed_traceparent_is_neither_parent_nor_link(
    spans: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        await client.get("/internal/save", headers={"traceparent": HOST_TRACEPARENT + "0" * 4000})
    [server] = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.parent is None and not server.links


def test_span_files_hold_one_json_line_per_span_whatever_the_attributes(tmp_path: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(tmp_path / "s.jsonl")))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("outer") as outer,
        tracer.start_as_current_span("publish") as inner,
    ):
        inner.set_attribute("messaging.kafka.message.key", b"\xffkey")  # FastStream's kind
    provider.shutdown()
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert (first["name"], second["name"]) == ("publish", "outer")
    assert first["parent_id"] == second["context"]["span_id"]
    assert first["context"]["trace_id"] == f"0x{outer.get_span_context().trace_id:032x}"
    assert first["attributes"]["messaging.kafka.message.key"] == "\ufffdkey"


def test_tracing_off_adds_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.broker_middlewares() == ()
    event = _event()
    token = _in_host_trace()
    try:
        assert tracing.stamp(event).traceparent is None
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
