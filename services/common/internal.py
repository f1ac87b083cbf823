"""A worker's HTTP server: FastStream's health routes plus an internal API, by Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.asgi.types import ASGIApp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from services.common.metrics import HttpMetrics


def with_internal_api(app: AsgiFastStream, internal: ASGIApp) -> Starlette:
    """Serve ``internal`` under ``/internal/`` and ``app`` (health, metrics, broker) elsewhere.

    Every request is counted and timed (`HttpMetrics`).

    FastStream's ASGI app matches exact paths only, so Starlette routes by
    prefix in front of it; its lifespan runs FastStream's (broker start and
    stop, shutdown hooks).
    """

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app.start_lifespan_context():
            yield

    server = Starlette(
        routes=[Mount("/internal", app=internal), Mount("/", app=app)],
        middleware=[Middleware(HttpMetrics)],
        lifespan=lifespan,
    )
    server.state.broker = app.broker  # its subscribers and publishers: the AsyncAPI's source
    return server
