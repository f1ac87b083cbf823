"""Wires the provisioner: Kafka broker, hub client, handlers, health and internal API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream.asgi import AsgiFastStream
from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from schemas import (
    CloudEvent,
    ServerLost,
    ServerReady,
    ServerStopped,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionProvisioning,
    SessionRequested,
)
from services.common import tracing
from services.common.health import health_routes
from services.common.internal import with_internal_api
from services.common.kafka import EventConsumer, make_broker, publish_event, publishes
from services.common.mongo import connect as mongo_client
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient
from services.provisioner.internal_api import create_internal_api
from services.provisioner.settings import ProvisionerSettings
from services.provisioner.store import OpenSessions

log = logging.getLogger(__name__)


def create_app(settings: ProvisionerSettings) -> Starlette:
    """The provisioner's HTTP server: /healthz, /readyz (Kafka) and /internal (sync's tokens,
    the hub's notices of stopped servers)."""
    # The settings validator guarantees both.
    assert settings.hub_api_token is not None and settings.sync_token is not None
    tracing.setup(settings, "nbembed-provisioner")
    broker = make_broker(settings, client_id="nbembed-provisioner")
    publishes(
        broker,
        "provisioner",
        ServerReady,
        SessionProvisioning,
        SessionFailed,
        ServerStopped,
        ServerLost,
    )
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
    consumer.on(ServerWarmRequested, handlers.on_server_warm_requested)
    consumer.on(SessionRequested, handlers.on_session_requested)
    consumer.on(SessionEnded, handlers.on_session_ended)
    consumer.on(ServerStopped, handlers.on_server_stopped)
    consumer.attach(concurrency=settings.concurrency)
    background: list[asyncio.Task[None]] = []

    async def start_reconciling() -> None:
        background.append(asyncio.create_task(_reconcile_forever(handlers, settings)))

    async def close() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await hub.aclose()
        await mongo.close()

    async def server_stopped(event: CloudEvent[ServerStopped]) -> None:
        await publish_event(broker, event)

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(broker, mongo),
        # After the broker has stopped, i.e. after in-flight handlers finished:
        # closing the clients before (on_shutdown) failed every handler still
        # running on SIGTERM, and its retries dead-lettered the message.
        after_startup=[start_reconciling],
        after_shutdown=[close],
    )
    internal = create_internal_api(
        hub,
        settings.sync_token.get_secret_value(),
        token_seconds=settings.server_token_seconds,
        hub_notice_secret=(
            settings.hub_notice_token.get_secret_value() if settings.hub_notice_token else None
        ),
        on_server_stopped=server_stopped,
    )
    return with_internal_api(app, internal)


async def _reconcile_forever(handlers: ProvisionerHandlers, settings: ProvisionerSettings) -> None:
    """Every ``reconcile_seconds``: servers gone while sessions live on them (lost notices).

    Every replica runs it; a duplicate report is harmless (its handler finds
    the server already handled).
    """
    while True:
        await asyncio.sleep(settings.reconcile_seconds)
        try:
            found = await handlers.reconcile()
        except Exception:
            log.exception("reconciliation with the hub failed; next try later")
            continue
        if found:
            log.warning("servers found stopped without a notice", extra={"count": found})
