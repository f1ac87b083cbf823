"""Wires the gateway: FastAPI, the Kafka broker, MongoDB, tenants and the projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from pymongo import AsyncMongoClient

from schemas import NotebookStored, NotebookStoreFailed, ServerReady, SessionFailed, SessionReady
from services.common.kafka import EventConsumer, make_broker
from services.common.mongo import connect as mongo_client
from services.gateway import (
    api,
    audit_api,
    inputs_api,
    internal_api,
    library_api,
    problems,
    saves_api,
    sdk,
)
from services.gateway.audit import AuditProjector
from services.gateway.audit_store import AuditStore, AuditUsers
from services.gateway.deps import Gateway
from services.gateway.hub_identity import HubIdentity
from services.gateway.projection import Projection
from services.gateway.rate_limit import RateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.store import InputRecords, NotebookView, OpenFiles, SaveStore, SessionStore
from services.gateway.sync_client import SyncClient
from services.gateway.tenants import TenantRegistry
from services.gateway.tickets import Tickets


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway app; connections open in its lifespan, not at import."""
    # The settings validator guarantees every secret is loaded.
    assert settings.internal_token is not None and settings.ticket_key is not None
    broker = make_broker(settings, client_id="nbembed-gateway")
    mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
    database = settings.mongodb_database
    parts = Gateway(
        settings=settings,
        broker=broker,
        tenants=TenantRegistry.from_file(settings.tenants_file),
        sessions=SessionStore(mongo, database),
        saves=SaveStore(mongo, database),
        notebooks=NotebookView(mongo, database),
        open_files=OpenFiles(mongo, database),
        inputs=InputRecords(mongo, database),
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
    )
    hub_identity = HubIdentity(settings.hub_url)

    projection = Projection(parts.sessions, parts.saves, parts.notebooks, parts.open_files)
    consumer = EventConsumer(broker, group_id=settings.group_id, settings=settings)
    consumer.on(ServerReady, projection.on_server_ready)
    consumer.on(SessionReady, projection.on_session_ready)
    consumer.on(SessionFailed, projection.on_session_failed)
    consumer.attach()
    # Save outcomes in a group of their own, partitions in parallel: one consumer
    # for every topic handled them one at a time, the last of twenty concurrent
    # saves waiting for the nineteen others' store writes.
    outcomes = EventConsumer(broker, group_id=settings.saves_group_id, settings=settings)
    outcomes.on(NotebookStored, projection.on_notebook_stored)
    outcomes.on(NotebookStoreFailed, projection.on_notebook_store_failed)
    outcomes.attach(concurrency=settings.concurrency)
    # The audit trail reads nbembed's own topics in a group of its own: a slow
    # audit store never delays a session, and the trail misses no event.
    if settings.audit_projector:
        auditor = EventConsumer(broker, group_id=settings.audit_group_id, settings=settings)
        AuditProjector(broker, parts.audit, parts.audit_users, parts.sessions, parts.saves).attach(
            auditor
        )
        auditor.attach()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parts.tickets.ensure_indexes()
        await parts.audit.ensure_indexes()
        await broker.start()
        try:
            yield
        finally:
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
    app.state.gateway = parts
    app.state.hub_identity = hub_identity
    # The host JS SDK calls the gateway from host pages: allow exactly the
    # tenants' own origins (each request is still authorised by its token).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=parts.tenants.allowed_origins(),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location"],
        max_age=600,
    )
    problems.install(app)
    problems.document(app)

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
        inputs_api.router,
        saves_api.router,
        library_api.router,
        audit_api.router,
    )
    for router in (*routers, internal_api.router):
        app.include_router(router)
    app.include_router(sdk.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(response: Response) -> dict[str, str]:
        """Readiness: Kafka and MongoDB both answer (503 otherwise)."""
        checks = {
            "kafka": "ok" if await broker.ping(timeout=3.0) else "down",
            "mongodb": "ok" if await parts.sessions.ping() else "down",
        }
        if "down" in checks.values():
            response.status_code = 503
        return checks

    return app


def _json_or_raw(request: Request) -> bool:
    """A body the route can read: JSON, or raw bytes where the route takes any (uploads)."""
    if request.url.path == inputs_api.UPLOAD_PATH or not request.url.path.startswith("/v1/"):
        return True
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
