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
from services.gateway import api, problems
from services.gateway.projection import Projection
from services.gateway.settings import GatewaySettings
from services.gateway.store import NotebookView, SaveStore, SessionStore
from services.gateway.tenants import TenantRegistry
from services.gateway.tickets import TicketIssuer


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway app; connections open in its lifespan, not at import."""
    broker = make_broker(settings, client_id="nbembed-gateway")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(), serverSelectionTimeoutMS=5000, tz_aware=True
    )
    sessions = SessionStore(mongo, settings.mongodb_database)
    tickets = TicketIssuer(
        mongo,
        settings.mongodb_database,
        public_hub_url=settings.hub_url,
        ttl_seconds=settings.login_ticket_seconds,
    )
    saves = SaveStore(mongo, settings.mongodb_database)
    notebooks = NotebookView(mongo, settings.mongodb_database)
    projection = Projection(sessions, saves, notebooks)
    consumer = EventConsumer(broker, group_id=settings.group_id, settings=settings)
    consumer.on(ServerReady, projection.on_server_ready)
    consumer.on(SessionReady, projection.on_session_ready)
    consumer.on(SessionFailed, projection.on_session_failed)
    consumer.on(NotebookStored, projection.on_notebook_stored)
    consumer.on(NotebookStoreFailed, projection.on_notebook_store_failed)
    consumer.attach()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await tickets.ensure_indexes()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await mongo.close()

    app = FastAPI(
        title="nbembed gateway",
        version="1",
        summary="Embed Jupyter notebooks for your users; store them in your MongoDB.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.sessions = sessions
    app.state.tickets = tickets
    app.state.saves = saves
    app.state.notebooks = notebooks
    tenants = TenantRegistry.from_file(settings.tenants_file)
    app.state.tenants = tenants
    # The host JS SDK calls the gateway from host pages: allow exactly the
    # tenants' own origins (each request is still authorised by its API key).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=tenants.allowed_origins(),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location"],
        max_age=600,
    )
    problems.install(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next: Any) -> Any:
        """Refuse large bodies by their declared length, before reading them."""
        if "content-length" not in request.headers and "transfer-encoding" in request.headers:
            return problems.response(
                request, 411, "Length required", "Send a Content-Length (no chunked bodies)."
            )
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > settings.max_body_bytes:
            return problems.response(
                request,
                413,
                "Request too large",
                f"Request bodies are limited to {settings.max_body_bytes} bytes.",
            )
        return await call_next(request)

    app.include_router(api.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request, response: Response) -> dict[str, str]:
        """Readiness: Kafka and MongoDB both answer (503 otherwise)."""
        checks = {
            "kafka": "ok" if await broker.ping(timeout=3.0) else "down",
            "mongodb": "ok" if await sessions.ping() else "down",
        }
        if "down" in checks.values():
            response.status_code = 503
        return checks

    return app
