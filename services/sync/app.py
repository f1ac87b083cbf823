"""Wires sync: Kafka broker, contents client, notebook store, handlers, health."""

from __future__ import annotations

from typing import Any

from faststream.asgi import AsgiFastStream
from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from schemas import (
    InputsChanged,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerReady,
    SessionFailed,
    SessionReady,
)
from services.common import tracing
from services.common.health import health_routes
from services.common.internal import with_internal_api
from services.common.kafka import EventConsumer, make_broker, publishes
from services.common.mongo import connect as mongo_client
from services.sync.contents import ContentsClient
from services.sync.handlers import SyncHandlers
from services.sync.inputs import InputPlacer, InputStore
from services.sync.internal_api import create_internal_api
from services.sync.server_tokens import ServerTokens
from services.sync.settings import SyncSettings
from services.sync.store import NotebookStore


def create_app(settings: SyncSettings) -> Starlette:
    """Build sync's HTTP server: /healthz, /readyz (Kafka) and /internal (the gateway's)."""
    # The settings validator guarantees both.
    assert settings.provisioner_token is not None and settings.internal_token is not None
    tracing.setup(settings, "nbembed-sync")
    broker = make_broker(settings, client_id="nbembed-sync")
    publishes(broker, "sync", SessionReady, SessionFailed, NotebookStored, NotebookStoreFailed)
    mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
    store = NotebookStore(mongo, settings.mongodb_database, revisions_kept=settings.revisions_kept)
    # No hub credential here: each user's server is called with a token of that
    # user for that server alone, from the provisioner.
    tokens = ServerTokens(
        settings.provisioner_url,
        settings.provisioner_token.get_secret_value(),
        refresh_margin=settings.token_refresh_margin_seconds,
    )
    subdomain_host = settings.subdomain_host or None
    contents = ContentsClient(settings.hub_url, tokens, subdomain_host=subdomain_host)
    input_store = InputStore(mongo, settings.mongodb_database)
    placer = InputPlacer(contents, input_store)
    handlers = SyncHandlers(
        contents,
        store,
        broker,
        placer,
        public_hub_url=settings.public_hub_url or settings.hub_url,
        subdomain_host=subdomain_host,
        work_folder=settings.work_folder,
        ui=settings.ui,
        max_notebook_bytes=settings.max_notebook_bytes,
        save_read_seconds=settings.save_read_seconds,
        placement_seconds=settings.placement_seconds,
        max_json_depth=settings.max_json_depth,
        prestart_kernel=settings.prestart_kernel,
        prestart_seconds=settings.prestart_seconds,
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
    inputs = EventConsumer(broker, group_id=settings.inputs_group_id, settings=settings)
    inputs.on(InputsChanged, placer.on_inputs_changed)
    inputs.attach()

    async def close() -> None:
        await contents.aclose()
        await tokens.aclose()
        await mongo.close()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(broker, mongo),
        # After the broker has stopped, i.e. after in-flight handlers finished:
        # closing the clients before (on_shutdown) failed every handler still
        # running on SIGTERM, and its retries dead-lettered the message.
        after_shutdown=[close],
    )
    internal = create_internal_api(
        store,
        input_store,
        settings.internal_token.get_secret_value(),
        max_input_bytes=settings.max_input_bytes,
        handlers=handlers,
    )
    return with_internal_api(app, internal)
