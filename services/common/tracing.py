"""OpenTelemetry tracing: one trace per session and per save, across every service.

Off unless a service is told where spans go (``otlp_endpoint`` or ``trace_dir``):
then no provider is installed, nothing is instrumented and nothing is exported,
so tracing costs nothing when off.

On, a host's request to the gateway (FastAPI) starts the trace or continues the
host's own W3C ``traceparent``; every event published while handling it carries
that context in the CloudEvent itself, per the CloudEvents distributed-tracing
extension (``traceparent``/``tracestate`` attributes, ``ce_traceparent`` headers
in Kafka binary mode). FastStream's telemetry middleware adds producer and
consumer spans and its own ``traceparent`` header: publishing runs inside the
event's context, so its header is a child of the event's and both name one
trace. The CloudEvent attribute is the carrier of record: a consumer whose
``traceparent`` header is missing or names another trace reads the event's
instead. The gateway's outbox stores the attribute with each pending event, so
the relay's late republish stays in the request's trace. httpx (hub and
contents API calls) and PyMongo (store reads and writes) add client spans.

Requests from users' servers and browsers (``/internal/…``, browser tokens) are
untrusted: their trace context never becomes a parent. It is validated and
bounded, and at most linked from a new trace, so a hostile server cannot graft
its spans into someone else's trace.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from fastapi import FastAPI
from faststream import BaseMiddleware, StreamMessage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from schemas import CloudEvent
from schemas.envelope import valid_traceparent, valid_tracestate
from services.common.settings import ServiceSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

# The SDK and the instrumentations are imported only once tracing is set up: a
# service with tracing off does not even load them.

EventT = TypeVar("EventT", bound=CloudEvent[Any])

_W3C = TraceContextTextMapPropagator()
_TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")
_UNTRUSTED_LINK = "nbembed.untrusted_traceparent"
"""Scope key: a validated traceparent an untrusted caller sent, linked from the span."""

_provider: TracerProvider | None = None


def setup(settings: ServiceSettings, service: str) -> None:
    """Trace this process when its settings say where spans go; once per process.

    New traces are sampled at ``trace_sample_ratio``; a trusted caller's sampled
    flag and the events' contexts decide the rest (parent-based), so one
    decision holds for a whole trace across the services.
    """
    if _provider is not None or not (settings.otlp_endpoint or settings.trace_dir):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
    if settings.trace_dir:
        path = settings.trace_dir / f"{service}-{os.getpid()}.jsonl"
        exporter = cast("SpanExporter", JsonLinesExporter(path))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)


def install(provider: TracerProvider) -> None:
    """Trace with ``provider``: instrument httpx and PyMongo, wire Kafka and FastAPI.

    `setup` calls it; tests call it with an in-memory exporter's provider.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    global _provider
    _provider = provider
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)


def uninstall() -> None:
    """Undo `install` (tests)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    global _provider
    _provider = None
    HTTPXClientInstrumentor().uninstrument()
    PymongoInstrumentor().uninstrument()


def enabled() -> bool:
    """Whether this process traces."""
    return _provider is not None


class JsonLinesExporter:
    """Appends each finished span as one JSON line to a file (the local stack's traces).

    One file per process, so replicas never interleave lines. (A SpanExporter by
    duck typing: the SDK's base class is not imported while tracing is off.)
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(json.dumps(_record(span), default=_jsonable) + "\n" for span in spans)
        with self._lock:
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _record(span: ReadableSpan) -> dict[str, Any]:
    """A span as the SDK's ``to_json`` shapes it (which fails on the bytes attributes
    FastStream sets, such as the message key)."""
    context, parent = span.get_span_context(), span.parent

    def ids(of: trace.SpanContext) -> dict[str, str]:
        return {
            "trace_id": f"0x{trace.format_trace_id(of.trace_id)}",
            "span_id": f"0x{trace.format_span_id(of.span_id)}",
        }

    return {
        "name": span.name,
        "context": ids(context) if context is not None else None,
        "kind": str(span.kind),
        "parent_id": ids(parent)["span_id"] if parent is not None else None,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"context": ids(link.context), "attributes": dict(link.attributes or {})}
            for link in span.links
        ],
        "resource": {"attributes": dict(span.resource.attributes)},
    }


def _jsonable(value: object) -> object:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# Kafka ---------------------------------------------------------------------------


def broker_middlewares() -> tuple[Any, ...]:
    """The broker's middlewares when tracing: the CloudEvent carrier, then FastStream's spans.

    Order matters: FastStream runs the first one outermost, so the carrier has
    set the ``traceparent`` header by the time the telemetry middleware reads it.
    """
    if _provider is None:
        return ()
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return (CloudEventTraceContext, KafkaTelemetryMiddleware(tracer_provider=_provider))


class CloudEventTraceContext(BaseMiddleware):
    """Makes a consumed message's ``traceparent`` header agree with its CloudEvent.

    FastStream's middleware reads the plain header; the event's
    ``ce_traceparent`` is nbembed's contract. When the header is missing or
    names another trace, the event's context (validated) replaces it.
    """

    async def consume_scope(self, call_next: Callable[..., Any], msg: StreamMessage[Any]) -> Any:
        carry_cloudevent_context(msg.headers)
        return await call_next(msg)


def carry_cloudevent_context(headers: MutableMapping[str, Any]) -> None:
    """Point ``traceparent`` (and ``tracestate``) at the CloudEvent's trace if they differ."""
    event_parent = valid_traceparent(_text(headers.get("ce_traceparent")))
    if event_parent is None:
        return
    own = valid_traceparent(_text(headers.get("traceparent")))
    if own is not None and own.split("-")[1] == event_parent.split("-")[1]:
        return  # FastStream's own span in the event's trace: the finer parent
    headers["traceparent"] = event_parent
    state = valid_tracestate(_text(headers.get("ce_tracestate")))
    if state:
        headers["tracestate"] = state
    else:
        headers.pop("tracestate", None)


def _text(value: object) -> str | None:
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def carrier() -> dict[str, str]:
    """The current span's W3C context (``traceparent``, ``tracestate``); empty if none."""
    if _provider is None:
        return {}
    headers: dict[str, str] = {}
    _W3C.inject(headers)
    return headers


def stamp(event: EventT) -> EventT:
    """``event`` carrying the current trace context, unless it already carries one."""
    if event.traceparent is not None:
        return event
    return with_context(event, carrier())


def with_context(event: EventT, context: Mapping[str, Any]) -> EventT:
    """``event`` with the (validated) trace context in ``context``; unchanged if none."""
    parent = valid_traceparent(context.get("traceparent"))
    if parent is None:
        return event
    state = valid_tracestate(context.get("tracestate")) or None
    return event.model_copy(update={"traceparent": parent, "tracestate": state})


@contextmanager
def resumed(event: CloudEvent[Any]) -> Iterator[None]:
    """Run the block in ``event``'s trace context (an outbox republish, a consumer's publish)."""
    if _provider is None or event.traceparent is None:
        yield
        return
    headers = {"traceparent": event.traceparent}
    if event.tracestate:
        headers["tracestate"] = event.tracestate
    token = otel_context.attach(_W3C.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


# HTTP ----------------------------------------------------------------------------


def instrument_app(app: FastAPI, *, untrusted: Callable[[Scope], bool]) -> None:
    """Trace ``app``'s requests; callers for which ``untrusted`` is true get no parent.

    Their ``traceparent`` headers are removed before the instrumentation reads
    them; a valid one becomes a link of the request's new root span.
    """
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        server_request_hook=_link_untrusted,
        excluded_urls="/healthz,/readyz",  # probes: a trace each, every few seconds
        exclude_spans=["receive", "send"],  # one span per SSE chunk tells nothing
    )
    instrumented = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return UntrustedTraceContext(instrumented(), untrusted)

    # Outside the instrumentation's own middleware, which reads the headers first.
    setattr(app, "build_middleware_stack", build_middleware_stack)  # noqa: B010


class UntrustedTraceContext:
    """Strips W3C trace headers from untrusted requests, keeping a valid parent to link."""

    def __init__(self, app: ASGIApp, untrusted: Callable[[Scope], bool]) -> None:
        self.app = app
        self.untrusted = untrusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.untrusted(scope):
            headers = scope.get("headers") or []
            sent = next((v for k, v in headers if k == b"traceparent"), None)
            scope = {**scope, "headers": [(k, v) for k, v in headers if k not in _TRACE_HEADERS]}
            parent = valid_traceparent(_text(sent))
            if parent is not None:
                scope[_UNTRUSTED_LINK] = parent
        await self.app(scope, receive, send)


def _link_untrusted(span: Span, scope: Scope) -> None:
    parent = scope.get(_UNTRUSTED_LINK)
    if parent is None or not span.is_recording():
        return
    linked = trace.get_current_span(_W3C.extract({"traceparent": parent})).get_span_context()
    span.add_link(linked, {"nbembed.link": "untrusted caller's traceparent"})
