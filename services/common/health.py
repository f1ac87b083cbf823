"""Health endpoints of the Kafka workers, as Kubernetes probes expect them."""

from __future__ import annotations

from faststream.asgi import AsgiResponse, get, make_ping_asgi
from faststream.asgi.types import ASGIApp, Scope
from faststream.kafka import KafkaBroker


@get
async def liveness(scope: Scope) -> AsgiResponse:
    """The event loop answers: the process is alive (livenessProbe)."""
    return AsgiResponse(b"ok", status_code=200)


def health_routes(broker: KafkaBroker) -> list[tuple[str, ASGIApp]]:
    """``/healthz`` (alive) and ``/readyz`` (204 while the broker answers)."""
    return [("/healthz", liveness), ("/readyz", make_ping_asgi(broker, timeout=3.0))]
