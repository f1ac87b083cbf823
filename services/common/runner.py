"""Running a service process: logging, the HTTP server, clean stop on SIGTERM."""

from __future__ import annotations

import socket

import uvicorn

from services.common.logging import configure_logging
from services.common.settings import ServiceSettings


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket bound to ``host``:``port`` for uvicorn to serve on.

    Bound now but listening only once uvicorn serves, after the app's startup:
    the kernel hands a replica no connection while it is still starting.

    With ``reuse_port`` several processes bind the same port (Linux SO_REUSEPORT,
    same user) and the kernel spreads new connections among them: replicas of a
    service on one host answer on one address, and a replica that stops takes
    only its own connections with it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_service(name: str, app: object, settings: ServiceSettings, *, port: int) -> None:
    """Serve ``app`` (a FastStream ASGI app or a FastAPI app) on ``port``.

    Also on ``settings.replica_port`` when set: the same app on an address of
    this replica alone, for checks that must reach every replica. uvicorn turns
    SIGTERM into a graceful shutdown: the app's lifespan stops the broker
    (consumers leave their group, in-flight handlers finish) before exit.
    """
    configure_logging(name, settings.log_level)
    host = settings.http_host
    sockets = [listening_socket(host, port, reuse_port=settings.reuse_port)]
    if settings.replica_port:
        sockets.append(listening_socket(host, settings.replica_port, reuse_port=False))
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,  # keep our JSON logging
        lifespan="on",
        timeout_graceful_shutdown=20,
    )
    uvicorn.Server(config).run(sockets=sockets)
