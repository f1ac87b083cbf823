"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PROBLEM_TYPE_BASE = "https://nbembed.dev/problems/"


class Problem(Exception):
    """An error a client can act on: a status, a short title and a specific detail."""

    def __init__(
        self, status: int, title: str, detail: str, *, kind: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.extra = extra
        self.headers: dict[str, str] = {}


def _response(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    body.setdefault("instance", request.url.path)
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def response(request: Request, status: int, title: str, detail: str) -> JSONResponse:
    """A problem document for errors raised outside route handlers (middleware)."""
    kind = title.lower().replace(" ", "-")
    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    return _response(request, status, body)


def install(app: FastAPI) -> None:
    """Make every error the app returns a problem document."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        body = {
            "type": PROBLEM_TYPE_BASE + exc.kind,
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            **exc.extra,
        }
        return _response(request, exc.status, body, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": list(err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        body = {
            "type": PROBLEM_TYPE_BASE + "invalid-request",
            "title": "Invalid request",
            "status": 422,
            "detail": "; ".join(
                f"{'.'.join(map(str, e['location']))}: {e['message']}" for e in errors
            ),
            "errors": errors,
        }
        return _response(request, 422, body)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        body = {
            "type": "about:blank",
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        return _response(request, exc.status_code, body, getattr(exc, "headers", None))
