"""Health endpoints of the Kafka workers, as Kubernetes probes expect them."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from services.common.metrics import PATH as METRICS_PATH
from services.common.metrics import exposition

PING_SECONDS = 3.0


@get
async def liveness(scope: Scope) -> AsgiResponse:
    """The event loop answers: the process is alive (livenessProbe)."""
    return AsgiResponse(b"ok", status_code=200)


@get
async def metrics(scope: Scope) -> AsgiResponse:
    """This replica's Prometheus metrics (the health port is not reachable from kernels)."""
    body, content_type = exposition()
    return AsgiResponse(body, status_code=200, headers={"content-type": content_type})


async def store_answers(mongo: AsyncMongoClient[dict[str, Any]]) -> bool:
    """The store answers a ping within the probe's time."""
    try:
        async with asyncio.timeout(PING_SECONDS):  # not the client's server selection time
            await mongo.admin.command("ping")
        return True
    except Exception:
        return False


def health_routes(
    broker: KafkaBroker, mongo: AsyncMongoClient[dict[str, Any]] | None = None
) -> list[tuple[str, ASGIApp]]:
    """``/healthz`` (alive), ``/readyz`` (204 while the broker, and the store if any, answer)
    and ``/metrics`` (Prometheus).

    A worker whose store is down cannot do its work (every handler reads or
    writes it): readiness says so, so operators and the stack see it at once
    rather than through dead letters.
    """

    @get
    async def readiness(scope: Scope) -> AsgiResponse:
        ready = await broker.ping(PING_SECONDS)
        if ready and mongo is not None:
            ready = await store_answers(mongo)
        return AsgiResponse(b"", status_code=204 if ready else 500)

    return [("/healthz", liveness), ("/readyz", readiness), (METRICS_PATH, metrics)]
