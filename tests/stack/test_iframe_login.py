"""The credential in an iframe URL: one user, one use, one minute, nobody else's server."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra import store
from infra.settings import StackSettings
from schemas import hub_username
from schemas.login_ticket import QUERY_PARAMETER
from services.gateway.tickets import REDEEMED_COLLECTION
from tests.stack.helpers import IN_A_FRAME, open_session


def framed_browser() -> httpx.AsyncClient:
    """A cookie jar that navigates like an iframe on the host page."""
    return httpx.AsyncClient(follow_redirects=True, timeout=60, headers=IN_A_FRAME)


@pytest.fixture
async def two_users(gateway: httpx.AsyncClient, hub: httpx.AsyncClient) -> Any:
    """Ready sessions for two users of the same tenant: alice and bob."""
    run = uuid.uuid4().hex
    alice = await open_session(gateway, user_id=f"alice-{run}", notebook_name="a")
    bob = await open_session(gateway, user_id=f"bob-{run}", notebook_name="b")
    assert alice["status"] == bob["status"] == "ready"
    alice["hub_user"] = hub_username("demo", f"alice-{run}")
    bob["hub_user"] = hub_username("demo", f"bob-{run}")
    yield alice, bob
    for user in (alice, bob):
        await hub.delete(f"/users/{user['hub_user']}/server")


async def fresh_iframe_url(gateway: httpx.AsyncClient, session: dict[str, Any]) -> str:
    """Each read of a ready session hands out a new single-use URL."""
    url: str = (await gateway.get(f"/v1/sessions/{session['id']}")).json()["iframe_url"]
    return url


async def test_a_ticket_works_once(gateway: httpx.AsyncClient, two_users: Any) -> None:
    alice, _ = two_users
    url = await fresh_iframe_url(gateway, alice)
    async with framed_browser() as browser:
        assert (await browser.get(url)).status_code == 200
    async with framed_browser() as other_browser:
        replay = await other_browser.get(url)
    assert replay.status_code == 403
    assert "expired or was already used" in replay.text


async def test_the_login_answers_only_inside_a_frame(
    gateway: httpx.AsyncClient, two_users: Any
) -> None:
    """Fetch Metadata: a top-level or cross-site navigation does not log in (login CSRF)."""
    alice, _ = two_users
    url = await fresh_iframe_url(gateway, alice)
    top_level = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}
    cross_site = IN_A_FRAME | {"Sec-Fetch-Site": "cross-site"}
    for headers in ({}, top_level, cross_site):
        async with httpx.AsyncClient(timeout=60, headers=headers) as browser:
            refused = await browser.get(url)
        assert refused.status_code == 403
        assert "only works inside the application" in refused.text
        assert "jupyterhub-hub-login" not in refused.headers.get("set-cookie", "")
    async with framed_browser() as browser:  # refusals did not use the ticket up
        assert (await browser.get(url)).status_code == 200


async def test_a_ticket_never_reaches_another_users_server(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, two_users: Any
) -> None:
    alice, bob = two_users
    async with framed_browser() as browser:
        assert (await browser.get(await fresh_iframe_url(gateway, alice))).status_code == 200
        bobs_page = (
            f"{stack_settings.public_hub_url}/user/{bob['hub_user']}/notebooks/{bob['path']}"
        )
        response = await browser.get(bobs_page)
        assert response.status_code == 403
        api = await browser.get(
            f"{stack_settings.public_hub_url}/user/{bob['hub_user']}/api/contents/work"
        )
        assert api.status_code == 403


async def test_a_browser_logged_in_as_another_user_ends_up_as_the_tickets_user(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, two_users: Any
) -> None:
    alice, bob = two_users
    async with framed_browser() as browser:
        first = await browser.get(await fresh_iframe_url(gateway, alice))
        assert first.url.path.startswith(f"/user/{alice['hub_user']}/")
        second = await browser.get(await fresh_iframe_url(gateway, bob))
        assert second.status_code == 200
        assert second.url.path == f"/user/{bob['hub_user']}/notebooks/{bob['path']}"
        whoami = await browser.get(f"{stack_settings.public_hub_url}/hub/api/user")
        assert whoami.json()["name"] == bob["hub_user"]


async def test_tickets_never_appear_in_clear_in_logs_or_storage(
    gateway: httpx.AsyncClient,
    stack_settings: StackSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    two_users: Any,
) -> None:
    alice, _ = two_users
    url = await fresh_iframe_url(gateway, alice)
    token = httpx.URL(url).params[QUERY_PARAMETER]
    async with framed_browser() as browser:
        await browser.get(url)
        await browser.get(url)  # the refused replay is logged too
    redeemed = await mongo[store.DATABASES["gateway"]][REDEEMED_COLLECTION].find().to_list()
    assert redeemed, "redemption leaves a record of the used nonce"
    assert not any(token in str(doc) for doc in redeemed)
    for log in stack_settings.logs_dir.glob("*.log"):
        assert token not in log.read_text(errors="replace"), log.name
