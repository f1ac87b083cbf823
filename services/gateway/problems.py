"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from services.gateway import contract

PROBLEM_TYPE_BASE = "https://nbembed.dev/problems/"
MEDIA_TYPE = "application/problem+json"

ERRORS = {
    400: "The body cannot be read as JSON text (not UTF-8); malformed JSON is 422.",
    401: "No API key, or not one of this gateway's tenants (`WWW-Authenticate: Bearer`).",
    404: "No such object for this tenant (another tenant's objects do not exist for you).",
    411: "A chunked body without Content-Length.",
    413: "The body is over the gateway's limit.",
    415: "The body is not JSON (`Content-Type: application/json`).",
    403: "The credential is valid but refused for this (the detail says why).",
    410: "It was valid once and is no more (expired, used, or its session ended).",
    422: "A parameter, header or body field is invalid (`errors` lists each).",
    409: "The object is not in a state that allows this (the detail says which).",
    429: "Too many requests from this caller (`Retry-After` says when to retry).",
    503: "Kafka or the store is unavailable: nothing was accepted; retry after `Retry-After` "
    "seconds (with the same `Idempotency-Key` where you gave one).",
}
"""Errors any /v1 call may answer, by status, as the OpenAPI documents them."""


HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate: `Bearer`.",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before sending the request again.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}
"""Headers an error carries, by status (documented beside the problem body)."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error statuses, for its ``responses=``; `document` adds the body."""
    return {status: {"description": ERRORS.get(status, "")} for status in statuses}


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on the request's path, for ``Allow`` on 405.

    Starlette answers 405 from the first route whose path matches and lists only
    that route's methods; a path served by several routes (GET and DELETE of one
    id) accepts the union. Each method is asked of the routes as Starlette routes.
    """
    scope = dict(request.scope)
    allowed = []
    for method in METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: the body of every error the gateway answers."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str = Field(description="What went wrong this time, for a developer.")
    instance: str | None = Field(default=None, description="The request's path.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="422: each invalid field's location and message."
    )


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
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def response(request: Request, status: int, title: str, detail: str) -> JSONResponse:
    """A problem document for errors raised outside route handlers (middleware)."""
    kind = title.lower().replace(" ", "-")
    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    return _response(request, status, body)


def unavailable(request: Request, detail: str, retry_after: int) -> JSONResponse:
    """503 with ``Retry-After``: a component nbembed needs does not answer now."""
    body = {
        "type": PROBLEM_TYPE_BASE + "unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": detail,
    }
    return _response(request, 503, body, {"Retry-After": str(retry_after)})


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
        title = {
            400: "Invalid JSON",
            404: "Not found",
            405: "Method not allowed",
        }.get(exc.status_code, "HTTP error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        body = {
            "type": "about:blank",
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        return _response(request, exc.status_code, body, headers)


def document(app: FastAPI) -> None:
    """Make the app's OpenAPI say what it sends: every error as problem+json.

    FastAPI documents only 422, as ``application/json`` with its own schema;
    the gateway answers every error as ``application/problem+json``. Each /v1
    operation gets the errors it can answer: 401 and 503 always, 404 on a path with an
    id, 411/413/415 with a JSON body, 422 where FastAPI validates, and any
    status its route declares.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
        for path, operations in schema["paths"].items():
            if path.startswith(("/v1/", "/internal/", "/admin/")):
                for operation in operations.values():
                    _document_errors(path, operation)
        contract.add_links_and_headers(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {401, 503} | {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    if "{" in path:
        statuses.add(404)
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        statuses |= {411, 413}
    if "application/json" in body:
        statuses |= {400, 415}
    for status in sorted(statuses):
        described = responses.get(str(status), {}).get("description")
        if status == 401 and path.startswith("/internal/"):
            described = "Not one of nbembed's own callers (a user's server, the hub's login)."
        if status == 401 and path.startswith("/admin/"):
            described = "Not the operator credential."
        responses[str(status)] = {
            "description": described if described and status != 422 else ERRORS.get(status, ""),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
        if status in HEADERS:
            responses[str(status)]["headers"] = HEADERS[status]
