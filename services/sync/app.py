"""Wires sync: Kafka broker, contents client, notebook store, handlers, health."""

from __future__ import annotations

from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from pymongo import AsyncMongoClient

from schemas import NotebookDeleted, NotebookRenamed, NotebookSaved, ServerReady
from services.common.health import health_routes
from services.common.kafka import EventConsumer, make_broker
from services.common.mongo import connect as mongo_client
from services.sync.contents import ContentsClient
from services.sync.handlers import SyncHandlers
from services.sync.internal_api import create_internal_api
from services.sync.settings import SyncSettings
from services.sync.store import NotebookStore


def with_internal_api(app: AsgiFastStream, internal: ASGIApp) -> ASGIApp:
    """Serve ``internal`` under ``/internal/`` beside the FastStream app.

    FastStream's ASGI app matches exact paths only, so the internal API gets
    its own prefix here; lifespan events still go to FastStream (broker start).
    """
    prefix = "/internal"

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(prefix + "/"):
            # Starlette routes on the path less root_path.
            inner = {**scope, "root_path": scope.get("root_path", "") + prefix}
            await internal(inner, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def create_app(settings: SyncSettings) -> ASGIApp:
    """Build sync's FastStream app with /healthz (alive) and /readyz (Kafka)."""
    assert settings.hub_api_token is not None  # the settings validator guarantees it
    broker = make_broker(settings, client_id="nbembed-sync")
    mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
    store = NotebookStore(mongo, settings.mongodb_database, revisions_kept=settings.revisions_kept)
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
    saves.on(NotebookRenamed, handlers.on_notebook_renamed)
    saves.on(NotebookDeleted, handlers.on_notebook_deleted)
    saves.attach(concurrency=settings.concurrency)

    async def close() -> None:
        await contents.aclose()
        await mongo.close()

    assert settings.internal_token is not None  # the settings validator guarantees it
    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(broker),
        on_shutdown=[close],
    )
    internal = create_internal_api(store, settings.internal_token.get_secret_value())
    return with_internal_api(app, internal)
