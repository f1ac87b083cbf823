"""Wires the provisioner: Kafka broker, hub client, handlers, health and internal API."""

from __future__ import annotations

from typing import Any

from faststream.asgi import AsgiFastStream
from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from schemas import SessionEnded, SessionRequested
from services.common.health import health_routes
from services.common.internal import with_internal_api
from services.common.kafka import EventConsumer, make_broker
from services.common.mongo import connect as mongo_client
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient
from services.provisioner.internal_api import create_internal_api
from services.provisioner.settings import ProvisionerSettings
from services.provisioner.store import OpenSessions


def create_app(settings: ProvisionerSettings) -> Starlette:
    """The provisioner's HTTP server: /healthz, /readyz (Kafka) and /internal (sync's tokens)."""
    # The settings validator guarantees both.
    assert settings.hub_api_token is not None and settings.sync_token is not None
    broker = make_broker(settings, client_id="nbembed-provisioner")
    hub = HubClient(settings.hub_url, settings.hub_api_token.get_secret_value())
    mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
    sessions = OpenSessions(mongo, settings.mongodb_database)
    handlers = ProvisionerHandlers(
        hub,
        sessions,
        broker,
        spawn_timeout=settings.spawn_timeout_seconds,
        hub_outage_tolerance=settings.hub_outage_seconds,
        hub_busy_tolerance=settings.hub_busy_seconds,
    )
    consumer = EventConsumer(broker, group_id=settings.group_id, settings=settings)
    consumer.on(SessionRequested, handlers.on_session_requested)
    consumer.on(SessionEnded, handlers.on_session_ended)
    consumer.attach(concurrency=settings.concurrency)

    async def close() -> None:
        await hub.aclose()
        await mongo.close()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(broker),
        on_shutdown=[close],
    )
    internal = create_internal_api(
        hub,
        settings.sync_token.get_secret_value(),
        token_seconds=settings.server_token_seconds,
    )
    return with_internal_api(app, internal)
