"""Sessions through the gateway: a host app gets a notebook for its user."""

from __future__ import annotations

import json
import uuid

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import IN_A_FRAME, open_session


async def test_new_user_new_notebook_opens_in_a_fresh_browser_as_that_user(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    hub_token: str,
) -> None:
    user_id = f"Ünïcode User {uuid.uuid4().hex} / with slashes"
    session = await open_session(gateway, user_id=user_id, notebook_name="../../Q1 analysis")
    hub_user = hub_username("demo", user_id)
    try:
        assert session["status"] == "ready", session
        assert session["path"] == "work/Q1 analysis.ipynb"  # no traversal out of work/
        assert session["iframe_url"].startswith(f"{stack_settings.public_hub_url}/hub/")

        # A browser with no cookies follows the iframe URL to the notebook page...
        async with httpx.AsyncClient(
            follow_redirects=True, timeout=60, headers=IN_A_FRAME
        ) as browser:
            page = await browser.get(session["iframe_url"])
            assert page.status_code == 200
            assert page.url.path == f"/user/{hub_user}/notebooks/work/Q1 analysis.ipynb"
            assert "jupyter-config-data" in page.text
            # ...and from then on its cookies alone are enough.
            again = await browser.get(page.url)
            assert again.status_code == 200 and not again.history
            api = await browser.get(page.url.copy_with(path=f"/user/{hub_user}/api/contents/work"))
            assert api.status_code == 200

        url = f"{stack_settings.public_hub_url}/user/{hub_user}/api/contents/{session['path']}"
        async with httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}) as http:
            notebook = await http.get(url, params={"content": "1"})
        assert notebook.status_code == 200
        assert notebook.json()["content"]["metadata"]["kernelspec"]["name"] == "python3"
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_returning_user_with_a_running_server_gets_no_second_spawn(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> None:
    user_id = f"returning-{uuid.uuid4().hex}"
    hub_user = hub_username("demo", user_id)
    try:
        first = await open_session(gateway, user_id=user_id, notebook_name="first")
        assert first["status"] == "ready"
        started = (await hub.get(f"/users/{hub_user}")).json()["servers"][""]["started"]
        second = await open_session(gateway, user_id=user_id, notebook_name="first")
        assert second["status"] == "ready"
        assert (await hub.get(f"/users/{hub_user}")).json()["servers"][""]["started"] == started
        # Same name asked twice: the second notebook never overwrites the first.
        assert second["path"] != first["path"]
        assert second["notebook_id"] != first["notebook_id"]
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_idempotency_key_returns_the_same_session(gateway: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    body = {"user_id": f"idem-{uuid.uuid4().hex}", "notebook_name": "x"}
    first = await gateway.post("/v1/sessions", json=body, headers={"Idempotency-Key": key})
    again = await gateway.post("/v1/sessions", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    await gateway.delete(f"/v1/sessions/{first.json()['id']}")


async def test_a_tenant_never_sees_another_tenants_session(
    gateway: httpx.AsyncClient, other_api_key: str
) -> None:
    created = await gateway.post("/v1/sessions", json={"user_id": f"iso-{uuid.uuid4().hex}"})
    session_id = created.json()["id"]
    other = {"Authorization": f"Bearer {other_api_key}"}
    for method in ("GET", "DELETE"):
        response = await gateway.request(method, f"/v1/sessions/{session_id}", headers=other)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert (await gateway.get(f"/v1/sessions/{session_id}")).status_code == 200
    await gateway.delete(f"/v1/sessions/{session_id}")


async def test_bad_input_gets_a_clear_problem_never_a_5xx(
    gateway: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    base = f"http://127.0.0.1:{stack_settings.gateway_port}"
    async with httpx.AsyncClient(base_url=base) as anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = await anon.post("/v1/sessions", json={"user_id": "u"}, headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 401

    cases = [
        b"{not json",
        b'{"notebook_name": "no user"}',
        b'{"user_id": ""}',
        ('{"user_id": "' + "u" * 513 + '"}').encode(),
        b'{"user_id": "u", "notebook_id": "../etc"}',
        b'{"user_id": "u", "notebook_id": "a", "notebook_name": "b"}',
        b'{"user_id": "u", "surprise": 1}',
        b"[]",
    ]
    for body in cases:
        response = await gateway.post(
            "/v1/sessions", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["title"] == "Invalid request" and problem["detail"]

    missing = await gateway.get(f"/v1/sessions/{uuid.uuid4().hex}")
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("session-not-found")


async def test_status_streams_as_server_sent_events_until_final(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> None:
    user_id = f"sse-{uuid.uuid4().hex}"
    created = await gateway.post("/v1/sessions", json={"user_id": user_id})
    statuses = []
    try:
        async with gateway.stream("GET", created.json()["links"]["events"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    statuses.append(json.loads(line[len("data: ") :])["status"])
        # It ends by itself at the final status, never going backwards.
        assert statuses[-1] == "ready"
        assert statuses == sorted(statuses, key=["requested", "provisioning", "ready"].index)
    finally:
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")


async def test_an_oversized_body_is_refused_before_it_is_read(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/v1/sessions",
        content=b'{"user_id": "' + b"x" * (2 * 2**20) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_body_that_is_not_json_gets_415_and_the_openapi_says_so(
    gateway: httpx.AsyncClient,
) -> None:
    body = json.dumps({"user_id": "u", "notebook_name": "n"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        refused = await gateway.post(
            "/v1/sessions", content=body, headers={"content-type": content_type}
        )
        assert refused.status_code == 415, (content_type, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    # JSON passes the check (and here fails validation, creating nothing).
    invalid = await gateway.post(
        "/v1/sessions", content=b"{}", headers={"content-type": "application/json; charset=utf-8"}
    )
    assert invalid.status_code == 422
    documented = (await gateway.get("/openapi.json")).json()
    create = documented["paths"]["/v1/sessions"]["post"]["responses"]
    assert "application/problem+json" in create["415"]["content"]
