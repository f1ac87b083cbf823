"""Prometheus metrics every service shares: HTTP, Kafka, and the ``/metrics`` answer.

Each process (each replica) keeps its own counters in prometheus-client's
default registry, with its process collectors (CPU, memory, open files);
Prometheus scrapes every replica on its own address and sums. Domain metrics
are defined next to where they are observed (``nbembed_*``); FastStream's
middleware adds ``faststream_*`` for every consumer and producer.

Labels never carry a secret, a user id or content: routes are templates
(``/v1/sessions/{session_id}``), tenants are ids an operator chose.
"""

from __future__ import annotations

import time

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATH = "/metrics"
UNMATCHED = "<unmatched>"
"""The route label of requests no route served: unbounded paths never become labels."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels as sent; any other method (a client may send any token) is ``OTHER``."""

HTTP_REQUESTS = Counter(
    "nbembed_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "nbembed_http_request_duration_seconds",
    "Time to answer an HTTP request (long-polls included: they wait by design).",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def route_template(scope: Scope, status: int) -> str:
    """The route that served the request, as its template; never a raw unknown path.

    Starlette records the matched route in the scope. A mount's inner router
    records the inner route, whose path is relative to the mount (the
    ``root_path`` holds the prefix). Behind a mount without routes of its own
    (FastStream's exact-path health app) the path itself is the template, but
    only when it was served: a 404 is ``<unmatched>``.
    """
    route = scope.get("route")
    if route is None or status == 404:
        return UNMATCHED
    if isinstance(route, Mount):
        return str(scope.get("path", UNMATCHED))
    prefix = str(scope.get("root_path", ""))
    return prefix + str(getattr(route, "path", UNMATCHED))


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope, status)
            method = scope.get("method", "")
            method = method if method in METHODS else "OTHER"
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)


def kafka_middleware(service: str) -> KafkaPrometheusMiddleware:
    """FastStream's Prometheus middleware for one service's broker (consumers and producers).

    ``faststream_received_*`` and ``faststream_published_*``, labelled by
    ``app_name`` (the service), handler (topic) and status.
    """
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)


def registered_names() -> set[str]:
    """Every sample name this process can expose (``x_total``, ``x_bucket``, ``x``…).

    From the registered families, observed or not: what a dashboard may query.
    """
    suffixes: dict[str, tuple[str, ...]] = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("_count", "_sum", ""),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def exposed_names(prefix: str) -> set[str]:
    """The registered metrics starting with ``prefix``, as queries name them.

    A counter by its ``_total`` sample, anything else by its family name (a
    histogram's ``_bucket``, ``_count`` and ``_sum`` share it).
    """
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith(prefix)
    }
