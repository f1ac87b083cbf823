"""Wires sync: Kafka broker, contents client, notebook store, handlers, health."""

from __future__ import annotations

from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.asgi.types import Scope
from pymongo import AsyncMongoClient

from schemas import NotebookSaved, ServerReady
from services.common.kafka import EventConsumer, make_broker
from services.sync.contents import ContentsClient
from services.sync.handlers import SyncHandlers
from services.sync.settings import SyncSettings
from services.sync.store import NotebookStore


@get
async def liveness(scope: Scope) -> AsgiResponse:
    """The event loop answers: the process is alive."""
    return AsgiResponse(b"ok", status_code=200)


def create_app(settings: SyncSettings) -> AsgiFastStream:
    """Build sync's FastStream app with /healthz (alive) and /readyz (Kafka)."""
    assert settings.hub_api_token is not None  # the settings validator guarantees it
    broker = make_broker(settings, client_id="nbembed-sync")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(), serverSelectionTimeoutMS=5000, tz_aware=True
    )
    store = NotebookStore(mongo, settings.mongodb_database)
    contents = ContentsClient(settings.hub_url, settings.hub_api_token.get_secret_value())
    handlers = SyncHandlers(
        contents,
        store,
        broker,
        public_hub_url=settings.hub_url,
        work_folder=settings.work_folder,
        ui=settings.ui,
        max_notebook_bytes=settings.max_notebook_bytes,
    )
    # Two groups, each reading one topic with its partitions handled in parallel:
    # placing notebooks for new sessions never waits behind storing saves.
    placements = EventConsumer(broker, group_id=settings.group_id, settings=settings)
    placements.on(ServerReady, handlers.on_server_ready)
    placements.attach(concurrency=settings.concurrency)
    saves = EventConsumer(broker, group_id=settings.saves_group_id, settings=settings)
    saves.on(NotebookSaved, handlers.on_notebook_saved)
    saves.attach(concurrency=settings.concurrency)

    async def close() -> None:
        await contents.aclose()
        await mongo.close()

    return AsgiFastStream(
        broker,
        asgi_routes=[("/healthz", liveness), ("/readyz", make_ping_asgi(broker, timeout=3.0))],
        on_startup=[store.ensure_indexes],
        on_shutdown=[close],
    )
