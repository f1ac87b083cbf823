"""Running a service process: logging, the HTTP server, clean stop on SIGTERM."""

from __future__ import annotations

import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.common.logging import configure_logging

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
        http=ProblemH11Protocol,
        log_config=None,  # keep our JSON logging
        lifespan="on",
        timeout_graceful_shutdown=20,
    )
