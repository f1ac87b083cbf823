"""Wires the gateway: FastAPI, the Kafka broker, MongoDB, tenants and the projection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Scope

from schemas import (
    AuditRecorded,
    EndCode,
    InputsChanged,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerLost,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionProvisioning,
    SessionReady,
    SessionRequested,
    StatusChanged,
)
from services.common import tracing
from services.common.health import PING_SECONDS
from services.common.kafka import EventConsumer, make_broker, publishes
from services.common.metrics import HttpMetrics
from services.common.mongo import connect as mongo_client
from services.gateway import (
    admin_api,
    api,
    audit_api,
    inputs_api,
    internal_api,
    library_api,
    metrics_api,
    problems,
    rendering,
    revisions_api,
    saves_api,
    sdk,
    warm_api,
)
from services.gateway.attachments import INPUTS_KIND, render_inputs
from services.gateway.audit import AuditProjector
from services.gateway.audit_store import AuditStore, AuditUsers
from services.gateway.changes import ChangeFeed
from services.gateway.dead_letters import DeadLetters
from services.gateway.deps import SESSION_TOKEN_PREFIX, Gateway
from services.gateway.hub_identity import HubIdentity
from services.gateway.library_api import end_sessions_of_deleted
from services.gateway.outbox import BrokerUnavailable, Outbox
from services.gateway.projection import Projection
from services.gateway.rate_limit import RateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.store import (
    Document,
    InputRecords,
    NotebookView,
    OpenFiles,
    SaveStore,
    SessionRestores,
    SessionStore,
    WarmUps,
)
from services.gateway.sync_client import SyncClient
from services.gateway.tenants import TenantRegistry, TenantStore, keep_fresh, seed
from services.gateway.tickets import Tickets

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway app; connections open in its lifespan, not at import."""
    # The settings validator guarantees every secret is loaded.
    assert settings.internal_token is not None and settings.ticket_key is not None
    tracing.setup(settings, "nbembed-gateway")
    broker = make_broker(settings, client_id="nbembed-gateway")
    publishes(
        broker,
        "gateway",
        ServerWarmRequested,
        SessionRequested,
        SessionEnded,
        NotebookSaved,
        NotebookRenamed,
        NotebookDeleted,
        InputsChanged,
        AuditRecorded,
        SessionFailed,
        NotebookStoreFailed,
        StatusChanged,
    )
    mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
    database = settings.mongodb_database
    parts = Gateway(
        settings=settings,
        broker=broker,
        tenants=TenantRegistry(),
        tenant_store=TenantStore(mongo, database),
        sessions=SessionStore(mongo, database),
        saves=SaveStore(mongo, database),
        notebooks=NotebookView(mongo, database),
        open_files=OpenFiles(mongo, database),
        restores=SessionRestores(mongo, database),
        inputs=InputRecords(mongo, database),
        warmups=WarmUps(mongo, database),
        tickets=Tickets(
            mongo,
            database,
            key=settings.ticket_key.get_secret_value().encode(),
            public_hub_url=settings.public_hub_url or settings.hub_url,
            ttl_seconds=settings.login_ticket_seconds,
            subdomain_host=settings.subdomain_host or None,
        ),
        sync=SyncClient(settings.sync_url, settings.internal_token.get_secret_value()),
        audit=AuditStore(mongo, database),
        audit_users=AuditUsers(mongo, database),
        audit_reports=RateLimiter(
            burst=settings.audit_report_burst, per_second=settings.audit_report_per_second
        ),
        views=rendering.ViewCache(settings.view_cache_entries),
        outbox=Outbox(
            mongo,
            database,
            broker,
            publish_seconds=settings.publish_timeout_seconds,
            relay_seconds=settings.outbox_relay_seconds,
            retry_after=settings.broker_retry_after_seconds,
        ),
    )
    parts.outbox.render(INPUTS_KIND, lambda entry_id, entry: render_inputs(parts, entry_id, entry))
    parts.outbox.before_relay(
        NotebookView.COLLECTION, lambda notebook: end_sessions_of_deleted(parts, notebook)
    )
    hub_identity = HubIdentity(settings.hub_url)

    async def end_session(session: Document, reason: str, code: EndCode) -> None:
        await api.end(parts, session, reason=reason, code=code)

    projection = Projection(
        parts.sessions, parts.saves, parts.notebooks, parts.open_files, end_session
    )
    consumer = EventConsumer(broker, group_id=settings.group_id, settings=settings)
    consumer.on(SessionProvisioning, projection.on_session_provisioning)
    consumer.on(SessionReady, projection.on_session_ready)
    consumer.on(SessionFailed, projection.on_session_failed)
    consumer.on(ServerLost, projection.on_server_lost)
    # One consumer per partition: one consumer of every partition fetched a partition
    # only once its fetch of the others returned, and projected users one at a time.
    consumer.attach(concurrency=settings.concurrency)
    # Save outcomes in a group of their own, partitions in parallel: one consumer
    # for every topic handled them one at a time, the last of twenty concurrent
    # saves waiting for the nineteen others' store writes.
    outcomes = EventConsumer(broker, group_id=settings.saves_group_id, settings=settings)
    outcomes.on(NotebookStored, projection.on_notebook_stored)
    outcomes.on(NotebookStoreFailed, projection.on_notebook_store_failed)
    outcomes.attach(concurrency=settings.concurrency)
    changes = ChangeFeed(broker, {"session": parts.sessions.changes, "save": parts.saves.changes})
    changes.attach()
    # The audit trail reads nbembed's own topics in a group of its own: a slow
    # audit store never delays a session, and the trail misses no event.
    if settings.audit_projector:
        auditor = EventConsumer(broker, group_id=settings.audit_group_id, settings=settings)
        AuditProjector(broker, parts.audit, parts.audit_users, parts.sessions, parts.saves).attach(
            auditor
        )
        auditor.attach(background=True)
    if settings.dead_letters:
        own = {settings.group_id, settings.audit_group_id, settings.dead_letters_group_id}
        DeadLetters(broker, parts.sessions, parts.saves, own_groups=own).attach(
            settings.dead_letters_group_id, settings.kafka_heartbeat_interval_ms
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parts.tickets.ensure_indexes()
        await parts.audit.ensure_indexes()
        await seed(parts.tenant_store, settings.tenants_file)
        loaded = asyncio.Event()
        reloader = asyncio.create_task(
            keep_fresh(parts.tenants, parts.tenant_store, settings.tenants_refresh_seconds, loaded)
        )
        await loaded.wait()
        await broker.start()
        await changes.started()  # ready only once no other replica's change can be missed
        relay = asyncio.ensure_future(parts.outbox.run_relay())
        # nbconvert and its templates take seconds to load: loaded now, in the
        # background, the first view is as fast as the next.
        warming = asyncio.ensure_future(asyncio.to_thread(rendering.warm))
        try:
            yield
        finally:
            warming.cancel()
            reloader.cancel()
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await parts.outbox.aclose()
            await changes.aclose()
            await broker.stop()
            await parts.sync.aclose()
            await hub_identity.aclose()
            await mongo.close()

    app = FastAPI(
        title="nbembed gateway",
        version="1",
        summary="Embed Jupyter notebooks for your users; store them in your MongoDB.",
        lifespan=lifespan,
    )
    # No 307 to the same path with or without a trailing slash: a path the OpenAPI
    # does not name is a 404 problem, not an undocumented redirect.
    app.router.redirect_slashes = False
    app.state.gateway = parts
    app.state.hub_identity = hub_identity
    # The host JS SDK calls the gateway from host pages: allow exactly the
    # tenants' own origins, as they are now (each request is still authorised
    # by its token).
    app.add_middleware(
        TenantOriginsCORS,
        registry=parts.tenants,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location"],
        max_age=600,
    )
    problems.install(app)
    problems.document(app)

    @app.exception_handler(BrokerUnavailable)
    async def on_broker_down(request: Request, exc: BrokerUnavailable) -> Response:
        """Kafka is down: nothing was recorded; the same request later will work."""
        detail = "Kafka is unavailable, so nothing was recorded; send the request again later."
        return problems.unavailable(request, detail, exc.retry_after)

    @app.exception_handler(ConnectionFailure)
    async def on_store_down(request: Request, exc: ConnectionFailure) -> Response:
        """The store does not answer: nothing acknowledged; the same request later will work."""
        log.warning("store unavailable", extra={"path": request.url.path, "error": repr(exc)})
        detail = "The store is unavailable; send the request again later (with the same "
        detail += "Idempotency-Key where you gave one)."
        return problems.unavailable(request, detail, settings.store_retry_after_seconds)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next: Any) -> Any:
        """Refuse large bodies by their declared length, before reading them."""
        if "content-length" not in request.headers and "transfer-encoding" in request.headers:
            return problems.response(
                request, 411, "Length required", "Send a Content-Length (no chunked bodies)."
            )
        declared = request.headers.get("content-length", "0")
        limit = (
            settings.max_input_bytes
            if request.url.path == inputs_api.UPLOAD_PATH
            else settings.max_body_bytes
        )
        if not declared.isdigit() or int(declared) > limit:
            return problems.response(
                request, 413, "Request too large", f"This body is limited to {limit} bytes."
            )
        if int(declared) and not _json_or_raw(request):
            return problems.response(
                request,
                415,
                "Unsupported media type",
                "Send the body as JSON (Content-Type: application/json).",
            )
        return await call_next(request)

    routers = (
        api.router,
        warm_api.router,
        inputs_api.router,
        saves_api.router,
        library_api.router,
        revisions_api.router,
        audit_api.router,
    )
    for router in (*routers, internal_api.router, admin_api.router):
        app.include_router(router)
    app.include_router(sdk.router)
    app.include_router(metrics_api.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            503: {
                "description": "Kafka or MongoDB is down (the same body says which).",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                },
            }
        },
    )
    async def readyz(response: Response) -> dict[str, str]:
        """Readiness: Kafka and MongoDB both answer (503 otherwise)."""
        checks = {
            "kafka": "ok" if await broker.ping(timeout=PING_SECONDS) else "down",
            "mongodb": "ok" if await parts.sessions.ping() else "down",
        }
        if "down" in checks.values():
            response.status_code = 503
        return checks

    tracing.instrument_app(app, untrusted=_untrusted_caller)
    # Outermost: every answer counts, the middlewares' own (413, CORS) included.
    app.add_middleware(HttpMetrics)
    return app


def _untrusted_caller(scope: Scope) -> bool:
    """Users' servers (the internal API) and browsers (session tokens): their trace
    context is linked, never a parent (see services.common.tracing)."""
    if scope["path"].startswith(internal_api.router.prefix + "/"):
        return True
    headers: dict[bytes, bytes] = dict(scope["headers"])
    _, _, credential = headers.get(b"authorization", b"").partition(b" ")
    return credential.strip().startswith(SESSION_TOKEN_PREFIX.encode())


class TenantOriginsCORS(CORSMiddleware):
    """CORS for the origins of the tenants as the registry knows them at each request."""

    def __init__(self, app: ASGIApp, /, *, registry: TenantRegistry, **options: Any) -> None:
        super().__init__(app, allow_origins=(), **options)
        self._registry = registry

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether some enabled tenant serves its pages from ``origin`` now."""
        return origin in self._registry.allowed_origins()


def _json_or_raw(request: Request) -> bool:
    """A body the route can read: JSON, or raw bytes where the route takes any (uploads)."""
    path = request.url.path
    if path == inputs_api.UPLOAD_PATH or not path.startswith(("/v1/", "/admin/")):
        return True
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
