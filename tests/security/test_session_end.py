"""Session end is access end, in the browser too.

A browser that opened a notebook holds two credentials: the hub's login
cookie and an OAuth token (a cookie on ``/user/<name>/``) for the user's
server. The attack: the host ends the user's last session (the user logged
out of the host app on a shared machine), the same user comes back later so
their server runs again, and the browser left open from before reaches that
server without a new ticket. The test fails if it can.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import IN_A_FRAME, eventually, open_session


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@pytest.fixture
async def returning_user(hub: httpx.AsyncClient) -> Any:
    user_id = f"leaver-{uuid.uuid4().hex[:12]}"
    yield user_id
    await hub.delete(f"/users/{hub_username('demo', user_id)}/server")


async def reaches_server(browser: httpx.AsyncClient, hub_user: str) -> bool:
    """Whether this browser's cookies get the user's server to list their files."""
    response = await browser.get(f"/user/{hub_user}/api/contents", follow_redirects=False)
    return response.status_code == 200 and response.json().get("type") == "directory"


async def test_a_browser_left_open_loses_the_server_when_the_last_session_ends(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    returning_user: str,
) -> None:
    hub_user = hub_username("demo", returning_user)
    session = await open_session(gateway, user_id=returning_user, notebook_name="shared desk")
    assert session["status"] == "ready", session
    async with httpx.AsyncClient(
        base_url=stack_settings.public_hub_url,
        headers=IN_A_FRAME,
        follow_redirects=True,
        timeout=60,
    ) as browser:
        opened = await browser.get(session["iframe_url"])
        assert opened.status_code == 200 and f"/user/{hub_user}/" in str(opened.url)
        assert await reaches_server(browser, hub_user)  # control: the cookies work

        assert (await gateway.delete(f"/v1/sessions/{session['id']}")).status_code == 204

        async def forgotten() -> bool:
            return (await hub.get(f"/users/{hub_user}")).status_code == 404

        await eventually(forgotten, timeout=60)

        # The user comes back: a new session runs the server again.
        again = await open_session(gateway, user_id=returning_user, notebook_name="later")
        assert again["status"] == "ready", again

        assert not await reaches_server(browser, hub_user), "the old OAuth token still works"
        # Nor can the old hub login cookie get a new OAuth token: opening a page
        # of the server sends the browser through the hub's OAuth, which would
        # hand out a new token to a browser still logged in to the hub.
        await browser.get(f"/user/{hub_user}/tree")
        assert not await reaches_server(browser, hub_user), "the hub cookie logged it in again"
        assert (await browser.get("/hub/api/user")).status_code == 403
