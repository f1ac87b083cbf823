"""The gateway's OpenAPI says what the API sends: every error as problem+json.

The requests here never reach Kafka or the store (routing, authentication and
validation answer first); tests/stack/test_contract.py runs schemathesis
against the real gateway for everything else.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.runner import ProblemH11Protocol
from services.gateway import app as gateway_app
from services.gateway.contract import LINKS
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import load_file

PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}
KEY = "unit-test-key"


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    tenants = tmp_path / "tenants.json"
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    tenants.write_text(json.dumps([{"id": "demo", "api_key_sha256": digest}]))
    settings = GatewaySettings(
        tenants_file=tenants, internal_token="t", ticket_key="k" * 32, hub_login_token="t"
    )
    app = gateway_app.create_app(settings)
    # The lifespan, which loads tenants from the store, never runs here.
    app.state.gateway.tenants.replace(load_file(tenants))
    return app


@pytest.fixture
def openapi(app: FastAPI) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi()
    return schema


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # No context manager: the lifespan (Kafka, MongoDB) never runs.
    yield TestClient(app, headers={"Authorization": f"Bearer {KEY}"})


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in openapi["paths"].items()
        if path.startswith(("/v1/", "/internal/", "/admin/"))
        for method, operation in item.items()
    ]


def test_every_error_is_documented_as_problem_json(openapi: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    assert {"type", "title", "status", "detail"} <= set(
        openapi["components"]["schemas"]["ProblemDetails"]["properties"]
    )
    for path, method, operation in operations(openapi):
        errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
        assert "401" in errors, (method, path)
        if "{" in path:
            assert "404" in errors, (method, path)
        for code, response in errors.items():
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                method,
                path,
                code,
            )


def test_json_bodies_document_415_and_uploads_do_not(openapi: dict[str, Any]) -> None:
    create = openapi["paths"]["/v1/sessions"]["post"]["responses"]
    assert {"413", "415", "422"} <= set(create)
    upload = openapi["paths"]["/v1/inputs"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert "413" in upload["responses"] and "415" not in upload["responses"]


def test_405_allows_every_method_the_path_accepts(client: TestClient) -> None:
    for path, allowed in (
        ("/v1/sessions/abc", "DELETE, GET"),
        ("/v1/notebooks/abc", "DELETE, GET, PATCH"),
        ("/v1/sessions/abc/inputs/def", "DELETE, PUT"),
        ("/v1/sessions", "POST"),
    ):
        answer = client.request("OPTIONS", path)
        assert answer.status_code == 405, path
        assert answer.headers["allow"] == allowed, path
        assert answer.headers["content-type"] == "application/problem+json"


def test_a_path_with_a_trailing_slash_is_not_redirected(client: TestClient) -> None:
    answer = client.get("/v1/notebooks/", follow_redirects=False)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("key", ["a\x01b", "tab\tinside", "caf\xe9", "x" * 201])
def test_an_idempotency_key_outside_visible_ascii_is_a_problem(
    client: TestClient, key: str
) -> None:
    answer = client.post(
        "/v1/sessions",
        json={"user_id": "u"},
        headers={"Idempotency-Key": key.encode("latin-1")},  # type: ignore[dict-item]
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["location"] == ["header", "idempotency-key"]


def test_a_body_that_is_not_json_text_is_400_and_documented(
    client: TestClient, openapi: dict[str, Any]
) -> None:
    answer = client.post(
        "/v1/sessions", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["title"] == "Invalid JSON"
    assert "400" in openapi["paths"]["/v1/sessions"]["post"]["responses"]


def test_the_session_body_rule_is_in_the_schema(openapi: dict[str, Any]) -> None:
    create = openapi["components"]["schemas"]["SessionCreate"]
    assert create["not"]["required"] == ["notebook_id", "notebook_name"]
    [name] = openapi["paths"]["/v1/inputs"]["post"]["parameters"]
    assert name["schema"]["pattern"] and name["schema"]["maxLength"] == 128


def test_links_name_real_operations_and_parameters(openapi: dict[str, Any]) -> None:
    operations = {
        op["operationId"]: op for item in openapi["paths"].values() for op in item.values()
    }
    count = 0
    for path, item in openapi["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                for link in response.get("links", {}).values():
                    target = operations[link["operationId"]]
                    names = {p["name"] for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= names, (path, status, link)
                    count += 1
    assert count == len(LINKS)
    created = openapi["paths"]["/v1/sessions"]["post"]["responses"]["202"]
    assert "Location" in created["headers"]
    assert any("get_session" in name for name in created["links"])


def test_uvicorn_answers_an_unparsable_request_as_problem_json() -> None:
    """h11 refuses a bare CR in a header before the app: the answer is still a problem."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        FastAPI(), host="127.0.0.1", port=port, http=ProblemH11Protocol, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\rb\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
    finally:
        server.should_exit = True
        thread.join(10)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 400


@pytest.mark.parametrize(
    ("path", "query", "body"),
    [
        ("/v1/audit", {"since": "0.5"}, None),  # pydantic alone reads seconds since 1970
        ("/v1/sessions", {}, {"user_id": "u", "restricted": 0}),  # 0 is no boolean
        ("/v1/sessions", {}, {"user_id": 5}),  # 5 is no string
    ],
)
def test_values_off_their_documented_type_are_refused(
    client: TestClient, path: str, query: dict[str, str], body: dict[str, Any] | None
) -> None:
    answer = client.request("POST" if body else "GET", path, params=query, json=body)
    assert answer.status_code == 422
