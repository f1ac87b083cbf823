"""Running a service process: logging, the HTTP server, clean stop on SIGTERM."""

from __future__ import annotations

import json
import socket

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.common.logging import configure_logging
from services.common.settings import ServiceSettings

UNPARSABLE = {
    "type": "https://nbembed.dev/problems/invalid-http",
    "title": "Invalid HTTP request",
    "status": 400,
    "detail": "The request is not valid HTTP/1.1 (a header with CR, LF or NUL in its "
    "value, a malformed request line or header); it never reached the API.",
}
"""The body of uvicorn's own 400, for requests h11 refuses before any app sees them."""


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparsable requests as problem+json.

    h11 refuses some requests before the app (a bare CR or a NUL in a header
    value, a malformed line); uvicorn then answers its own ``text/plain`` 400.
    This sends the same status as a problem document like every other error.
    """

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(UNPARSABLE).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


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
    # IPPROTO_TCP, not the default 0: accepted sockets inherit it, and asyncio
    # turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say TCP.
    # With proto 0 every answer written in two parts waited ~40 ms for the
    # client's delayed ACK (measured: 45 ms per request instead of 2).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
        http=ProblemH11Protocol,
        log_config=None,  # keep our JSON logging
        lifespan="on",
        timeout_graceful_shutdown=20,
        timeout_keep_alive=int(settings.http_keep_alive_seconds),
    )
    uvicorn.Server(config).run(sockets=sockets)
