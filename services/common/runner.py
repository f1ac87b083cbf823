"""Running a service process: logging, the HTTP server, clean stop on SIGTERM."""

from __future__ import annotations

import uvicorn

from services.common.logging import configure_logging


def run_service(name: str, app: object, *, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` (a FastStream ASGI app or a FastAPI app) on ``host``:``port``.

    uvicorn turns SIGTERM into a graceful shutdown: the app's lifespan stops the
    broker (consumers leave their group, in-flight handlers finish) before exit.
    """
    configure_logging(name, log_level)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,  # keep our JSON logging
        lifespan="on",
        timeout_graceful_shutdown=20,
    )
