"""What FastAPI cannot infer for the OpenAPI: links between operations, response headers.

Links say which answer's field feeds which operation's parameter (the session a
POST created is the one to read, stream, save and end). Generated clients and
schemathesis's stateful tests follow them; `tests/unit/test_openapi.py` checks
that each names a real operation and parameter.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Link(NamedTuple):
    """One OpenAPI link: from an operation's answer to another operation's parameters."""

    source: tuple[str, str, str]  # method, path, status
    target: tuple[str, str]  # method, path
    parameters: dict[str, str]  # target parameter -> runtime expression


def _links() -> list[Link]:
    session = "/v1/sessions/{session_id}"
    created_session = ("post", "/v1/sessions", "202")
    sid = {"session_id": "$response.body#/id"}
    links = [
        Link(created_session, ("get", session), sid),
        Link(created_session, ("get", session + "/events"), sid),
        Link(created_session, ("post", session + "/saves"), sid),
        Link(created_session, ("delete", session), sid),
        Link(
            ("post", session + "/saves", "202"),
            ("get", "/v1/saves/{save_id}"),
            {"save_id": "$response.body#/id"},
        ),
    ]
    uploaded = ("post", "/v1/inputs", "201")
    iid = {"input_id": "$response.body#/id"}
    links += [
        Link(uploaded, ("get", "/v1/inputs/{input_id}"), iid),
        Link(uploaded, ("delete", "/v1/inputs/{input_id}"), iid),
    ]
    attach = session + "/inputs/{input_id}"
    links += [Link(created_session, (method, attach), sid) for method in ("put", "delete")] + [
        Link(uploaded, (method, attach), iid) for method in ("put", "delete")
    ]
    notebook = "/v1/notebooks/{notebook_id}"
    first = {"notebook_id": "$response.body#/items/0/id"}
    nid = {"notebook_id": "$response.body#/id"}
    for method, path in (
        ("get", notebook),
        ("get", notebook + "/revisions"),
        ("patch", notebook),
        ("delete", notebook),
    ):
        links.append(Link(("get", "/v1/notebooks", "200"), (method, path), first))
        if (method, path) != ("get", notebook):
            links.append(Link(("get", notebook, "200"), (method, path), nid))
    return links


LINKS = _links()
"""Every link the OpenAPI documents."""

LOCATION = {
    "Location": {
        "description": "The created object's URL (relative to the gateway).",
        "schema": {"type": "string"},
    }
}
CREATED = (
    ("post", "/v1/sessions", "202"),
    ("post", "/v1/inputs", "201"),
    ("post", "/v1/sessions/{session_id}/saves", "202"),
)
"""Answers that carry ``Location``."""


def add_links_and_headers(schema: dict[str, Any]) -> None:
    """Add `LINKS` and the ``Location`` headers to an OpenAPI document, in place."""
    paths = schema["paths"]
    for method, path, status in CREATED:
        paths[path][method]["responses"][status]["headers"] = LOCATION
    for link in LINKS:
        method, path, status = link.source
        target = paths[link.target[1]][link.target[0]]
        response = paths[path][method]["responses"][status]
        response.setdefault("links", {})[target["operationId"]] = {
            "operationId": target["operationId"],
            "parameters": link.parameters,
        }
