"""The gateway's OpenAPI says what the API sends: every error as problem+json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings

PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}


@pytest.fixture
def openapi(tmp_path: Path) -> dict[str, Any]:
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps([]))
    settings = GatewaySettings(
        tenants_file=tenants, internal_token="t", ticket_key="k" * 32, hub_login_token="t"
    )
    schema: dict[str, Any] = gateway_app.create_app(settings).openapi()
    return schema


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in openapi["paths"].items()
        if path.startswith("/v1/")
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
