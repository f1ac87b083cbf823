"""The audit trail on the real stack: a session's facts, in order, for its tenant alone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session


async def _trail(gateway: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every record the filters select, following the cursors to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await gateway.get(
            "/v1/audit", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def _index(items: list[dict[str, Any]], kind: str, **detail: str) -> int:
    for i, item in enumerate(items):
        if item["kind"] == kind and all(item["detail"].get(k) == v for k, v in detail.items()):
            return i
    raise AssertionError(f"no {kind} {detail} in {[i['kind'] for i in items]}")


async def test_a_session_leaves_its_trail_in_order_for_its_tenant_alone(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    other_api_key: str,
) -> None:
    user = f"audit-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username("demo", user)
    session = await open_session(gateway, user_id=user, notebook_name="Audited")
    assert session["status"] == "ready", session
    try:
        token = await user_server_token(hub, hub_user)
        async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
            assert (await kernel.run("print(6 * 7)")).stdout == "42\n"
            kernel_id = kernel.kernel_id
        saved = await gateway.post(f"/v1/sessions/{session['id']}/saves")
        assert saved.status_code == 202, saved.text
        outcome = await gateway.get(f"/v1/saves/{saved.json()['id']}", params={"wait": 30})
        assert outcome.json()["status"] == "stored", outcome.text
        save_id = saved.json()["id"]
        assert (await gateway.delete(f"/v1/sessions/{session['id']}")).status_code == 204

        async def complete() -> bool:
            kinds = {item["kind"] for item in await _trail(gateway, user_id=user)}
            return {"kernel.started", "save.stored", "session.ended"} <= kinds

        await eventually(complete, timeout=30)
        trail = await _trail(gateway, user_id=user, limit=100)
    finally:
        await hub.delete(f"/users/{hub_user}/server")

    # In order, each with the host's user id.
    order = [
        _index(trail, "session.requested"),
        _index(trail, "session.ready"),
        _index(trail, "kernel.started", kernel_id=kernel_id or ""),
        _index(trail, "save.requested", save_id=save_id, origin="host"),
        _index(trail, "save.stored", save_id=save_id),
        _index(trail, "session.ended", reason="ended by the host"),
    ]
    assert order == sorted(order), [item["kind"] for item in trail]
    assert [item["time"] for item in trail] == sorted(item["time"] for item in trail)
    assert {item["user_id"] for item in trail} == {user}
    assert trail[order[0]]["session_id"] == session["id"]
    assert trail[order[2]]["reported_by"] == "server"
    assert trail[order[4]]["notebook_id"] == session["notebook_id"]
    assert len({item["id"] for item in trail}) == len(trail)  # no fact twice

    # Small pages: the same records, once each, in the same order.
    paged = await _trail(gateway, user_id=user, limit=2)
    assert [item["id"] for item in paged] == [item["id"] for item in trail]
    # since: from the kernel's start on.
    later = await _trail(gateway, user_id=user, since=trail[order[2]]["time"])
    assert later[0]["time"] >= trail[order[2]]["time"]
    assert [item["id"] for item in later] == [
        item["id"] for item in trail if item["time"] >= trail[order[2]]["time"]
    ]

    # Another tenant sees none of it, whatever it asks.
    foreign = {"Authorization": f"Bearer {other_api_key}"}
    theirs = await gateway.get("/v1/audit", params={"user_id": user}, headers=foreign)
    assert theirs.status_code == 200 and theirs.json()["items"] == []
    everything = await gateway.get("/v1/audit", params={"limit": 100}, headers=foreign)
    ours = {item["id"] for item in trail}
    assert not ours & {item["id"] for item in everything.json()["items"]}
    assert (await gateway.get("/v1/audit")).status_code == 200
    assert (
        await gateway.get("/v1/audit", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_a_report_naming_another_user_is_refused_or_the_tokens_users(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    other_api_key: str,
) -> None:
    user, victim = f"audit-{uuid.uuid4().hex[:8]}", f"victim-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username("demo", user)
    await open_session(gateway, user_id=user, notebook_name="Forger")
    try:
        token = await user_server_token(hub, hub_user)
        url = f"http://127.0.0.1:{stack_settings.gateway_port}/internal/audit-reports"
        async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as server:
            named = await server.post(
                url, json={"kind": "download.refused", "user_id": victim, "tenant_id": "acme"}
            )
            assert named.status_code == 422, named.text
            assert named.headers["content-type"] == "application/problem+json"
            not_a_server_kind = await server.post(url, json={"kind": "session.ended"})
            assert not_a_server_kind.status_code == 422
            in_detail = await server.post(
                url,
                json={
                    "kind": "download.refused",
                    "detail": {"user_id": victim, "tenant_id": "acme", "path": "data.csv"},
                },
            )
            assert in_detail.status_code == 202, in_detail.text
        anonymous = await gateway.post("/internal/audit-reports", json={"kind": "kernel.started"})
        assert anonymous.status_code == 401

        async def recorded() -> bool:
            return any(i["kind"] == "download.refused" for i in await _trail(gateway, user_id=user))

        await eventually(recorded, timeout=30)
        (refused,) = [
            i for i in await _trail(gateway, user_id=user) if i["kind"] == "download.refused"
        ]
        assert refused["user_id"] == user and refused["reported_by"] == "server"
        assert await _trail(gateway, user_id=victim) == []
        foreign = {"Authorization": f"Bearer {other_api_key}"}
        for params in ({"user_id": victim}, {"user_id": user}):
            answer = await gateway.get("/v1/audit", params=params, headers=foreign)
            assert answer.json()["items"] == []
    finally:
        await hub.delete(f"/users/{hub_user}/server")


@pytest.mark.parametrize(
    "cursor", ["LTE=", "%%%", "MTIz", "OTk5OTk5OTk5OTk5OTk5OmFiYw==", "x" * 300]
)
async def test_a_cursor_this_api_did_not_give_is_a_client_error(
    gateway: httpx.AsyncClient, cursor: str
) -> None:
    answer = await gateway.get("/v1/audit", params={"cursor": cursor})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "cursor" in answer.json()["detail"]


async def test_the_audit_endpoint_is_documented(gateway: httpx.AsyncClient) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/audit"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"user_id", "since", "cursor", "limit"}
    # The servers' report route is documented (every answer the gateway sends is), but
    # as internal: no host app calls it, and it takes only a server's own hub token.
    reports = spec["paths"]["/internal/audit-reports"]["post"]
    assert reports["tags"] == ["internal"] and "security" not in reports
    assert "429" in reports["responses"]
