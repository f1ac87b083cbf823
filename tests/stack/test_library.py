"""The notebook library: list, read, rename and delete stored notebooks."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from schemas import hub_username
from services.gateway.store import NotebookView
from tests.stack.helpers import eventually, open_session


async def test_list_read_rename_and_delete(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, other_api_key: str
) -> None:
    run = uuid.uuid4().hex
    alice, bob = f"lib-alice-{run}", f"lib-bob-{run}"
    try:
        first = await open_session(gateway, user_id=alice, notebook_name="first")
        second = await open_session(gateway, user_id=alice, notebook_name="second")
        other = await open_session(gateway, user_id=bob, notebook_name="bobs")

        async def listed() -> bool:
            page = await gateway.get("/v1/notebooks", params={"user_id": alice})
            return len(page.json()["items"]) == 2

        await eventually(listed)
        page = (await gateway.get("/v1/notebooks", params={"user_id": alice})).json()
        # Most recently updated first; only alice's.
        assert [n["name"] for n in page["items"]] == ["second", "first"]
        # A save that changes nothing (as the server's own report of sync placing the
        # notebook is) leaves the order alone.
        resave = await gateway.post(f"/v1/sessions/{first['id']}/saves")
        outcome = (
            await gateway.get(f"/v1/saves/{resave.json()['id']}", params={"wait": 20})
        ).json()
        assert (outcome["status"], outcome["changed"]) == ("stored", False)
        page = (await gateway.get("/v1/notebooks", params={"user_id": alice})).json()
        assert [n["name"] for n in page["items"]] == ["second", "first"]
        assert {n["user_id"] for n in page["items"]} == {alice}
        one = (await gateway.get("/v1/notebooks", params={"user_id": alice, "limit": 1})).json()
        assert len(one["items"]) == 1 and one["next_cursor"]
        rest = await gateway.get(
            "/v1/notebooks", params={"user_id": alice, "limit": 1, "cursor": one["next_cursor"]}
        )
        assert [n["id"] for n in rest.json()["items"]] == [first["notebook_id"]]

        read = (await gateway.get(f"/v1/notebooks/{first['notebook_id']}")).json()
        assert read["revision"] == 1 and read["content"]["nbformat"] == 4
        revisions = (await gateway.get(f"/v1/notebooks/{first['notebook_id']}/revisions")).json()
        assert [r["revision"] for r in revisions["revisions"]] == [1]

        # Another tenant sees none of it.
        foreign = {"Authorization": f"Bearer {other_api_key}"}
        assert (
            await gateway.get(f"/v1/notebooks/{first['notebook_id']}", headers=foreign)
        ).status_code == 404
        assert (await gateway.get("/v1/notebooks", headers=foreign)).json()["items"] == [] or all(
            n["id"] not in {first["notebook_id"], second["notebook_id"]}
            for n in (await gateway.get("/v1/notebooks", headers=foreign)).json()["items"]
        )

        renamed = await gateway.patch(
            f"/v1/notebooks/{first['notebook_id']}", json={"name": "Q1 final"}
        )
        assert renamed.status_code == 200 and renamed.json()["name"] == "Q1 final"
        assert (await gateway.get(f"/v1/notebooks/{first['notebook_id']}")).json()["name"] == (
            "Q1 final"
        )

        # Delete: gone from the library and the store; its open session is told.
        assert (await gateway.delete(f"/v1/notebooks/{first['notebook_id']}")).status_code == 204
        assert (await gateway.get(f"/v1/notebooks/{first['notebook_id']}")).status_code == 404
        names = [
            n["name"]
            for n in (await gateway.get("/v1/notebooks", params={"user_id": alice})).json()["items"]
        ]
        assert names == ["second"]
        ended = (await gateway.get(f"/v1/sessions/{first['id']}")).json()
        assert ended["status"] == "ended" and ended["end_reason"] == "notebook deleted"
        reopen = await gateway.post(
            "/v1/sessions", json={"user_id": alice, "notebook_id": first["notebook_id"]}
        )
        assert reopen.status_code == 404
        assert other["status"] == "ready"
    finally:
        for user in (alice, bob):
            await hub.delete(f"/users/{hub_username('demo', user)}/server")


async def test_a_browser_token_only_saves_its_own_session(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: object
) -> None:
    user = f"token-{uuid.uuid4().hex}"
    created = await gateway.post("/v1/sessions", json={"user_id": user, "notebook_name": "t"})
    token = created.json()["browser_token"]
    assert token.startswith("nbs_")
    mine = await open_session(gateway, user_id=user, notebook_name="x")  # another session
    try:
        # Wait for the first to be ready.
        status = "requested"
        while status not in ("ready", "failed"):
            status = (
                await gateway.get(
                    f"/v1/sessions/{created.json()['id']}", params={"wait": 20, "status": status}
                )
            ).json()["status"]
        as_page = {"Authorization": f"Bearer {token}"}
        own = await gateway.post(f"/v1/sessions/{created.json()['id']}/saves", headers=as_page)
        assert own.status_code == 202
        outcome = await gateway.get(
            f"/v1/saves/{own.json()['id']}", params={"wait": 20}, headers=as_page
        )
        assert outcome.json()["status"] == "stored"
        other = await gateway.post(f"/v1/sessions/{mine['id']}/saves", headers=as_page)
        assert other.status_code == 404
        # It is no tenant key: it reads its own session (the SDK learns of its end this
        # way) without any login URL, no other session, and nothing else.
        read = await gateway.get(f"/v1/sessions/{created.json()['id']}", headers=as_page)
        assert read.status_code == 200 and read.json()["status"] == "ready"
        assert read.json()["iframe_url"] is None and read.json()["notebook_origin"] is None
        assert (await gateway.get(f"/v1/sessions/{mine['id']}", headers=as_page)).status_code == 404
        ended = await gateway.delete(f"/v1/sessions/{created.json()['id']}", headers=as_page)
        assert ended.status_code == 401
        assert (await gateway.get("/v1/notebooks", headers=as_page)).status_code == 401
        # A GET of the session does not hand the token out again.
        assert (await gateway.get(f"/v1/sessions/{created.json()['id']}")).json()[
            "browser_token"
        ] is None
    finally:
        await hub.delete(f"/users/{hub_username('demo', user)}/server")


@pytest.mark.parametrize(
    "cursor",
    [
        "LTE=",  # "-1"
        base64.urlsafe_b64encode(str(2**63).encode()).decode(),
        "bm90IGEgbnVtYmVy",  # "not a number"
        "%%%",
        "wqI=",  # not ASCII
    ],
)
async def test_a_cursor_this_api_did_not_give_is_a_client_error(
    gateway: httpx.AsyncClient, cursor: str
) -> None:
    answer = await gateway.get("/v1/notebooks", params={"cursor": cursor})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "cursor" in answer.json()["detail"]


async def test_the_library_orders_by_when_a_revision_was_stored_not_when_it_was_projected(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """Two gateway replicas project notebook events in any order: the one that became
    durable last is listed first even when its event was projected first."""
    view = NotebookView(mongo, "nbembed_test")
    tenant = f"order-{uuid.uuid4().hex[:8]}"
    earlier = datetime.now(UTC) - timedelta(seconds=5)
    later = earlier + timedelta(seconds=2)

    def notebook(notebook_id: str) -> dict[str, Any]:
        return {
            "tenant_id": tenant,
            "notebook_id": notebook_id,
            "hub_user": "u",
            "name": notebook_id,
            "user_id": "host-user",
        }

    try:
        await view.record(notebook("stored-later"), 1, later, changed=True)
        await view.record(notebook("stored-earlier"), 1, earlier, changed=True)
        listed = await view.list(tenant, "u", offset=0, limit=10)
        assert [doc["notebook_id"] for doc in listed] == ["stored-later", "stored-earlier"]
        # A redelivered older event never moves a notebook back.
        await view.record(notebook("stored-later"), 1, earlier, changed=True)
        listed = await view.list(tenant, "u", offset=0, limit=10)
        assert [doc["notebook_id"] for doc in listed] == ["stored-later", "stored-earlier"]
        # A later save that changed nothing does not make a notebook the latest either.
        await view.record(notebook("stored-earlier"), 1, datetime.now(UTC), changed=False)
        listed = await view.list(tenant, "u", offset=0, limit=10)
        assert [doc["notebook_id"] for doc in listed] == ["stored-later", "stored-earlier"]
    finally:
        await mongo["nbembed_test"][NotebookView.COLLECTION].delete_many({"tenant_id": tenant})
