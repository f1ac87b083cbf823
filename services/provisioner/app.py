"""Wires the provisioner: Kafka broker, hub client, handlers and health endpoints."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.asgi.types import Scope

from schemas import SessionRequested
from services.common.kafka import make_broker, subscribe_event
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient
from services.provisioner.settings import ProvisionerSettings


@get
async def liveness(scope: Scope) -> AsgiResponse:
    """The event loop answers: the process is alive (Kubernetes livenessProbe)."""
    return AsgiResponse(b"ok", status_code=200)


def create_app(settings: ProvisionerSettings) -> AsgiFastStream:
    """Build the provisioner's FastStream app with /healthz (alive) and /readyz (Kafka)."""
    assert settings.hub_api_token is not None  # the settings validator guarantees it
    broker = make_broker(settings, client_id="nbembed-provisioner")
    hub = HubClient(settings.hub_url, settings.hub_api_token.get_secret_value())
    handlers = ProvisionerHandlers(hub, broker, spawn_timeout=settings.spawn_timeout_seconds)
    subscribe_event(broker, SessionRequested, group_id=settings.group_id, settings=settings)(
        handlers.on_session_requested
    )
    return AsgiFastStream(
        broker,
        asgi_routes=[("/healthz", liveness), ("/readyz", make_ping_asgi(broker, timeout=3.0))],
        on_shutdown=[hub.aclose],
    )
