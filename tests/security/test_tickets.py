"""Login tickets: no forging through the store, one use, one session, one frame.

Each test performs an attack on the real stack and fails if it logs anyone
in: a ticket raced by 50 browsers at once, a ticket written straight into
MongoDB, a ticket with changed claims, an expired one, one whose session was
ended, and a user's own iframe URL sent to a victim as a top-level link
(login CSRF, in real chromium). Every attack has its control: the same step
with a genuine ticket logs in, so a refusal means the defence worked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page
from pymongo import AsyncMongoClient

from infra import store
from infra.settings import StackSettings
from schemas import hub_username
from schemas.login_ticket import LOGIN_PATH, QUERY_PARAMETER
from services.gateway.tickets import Claims, Tickets, _b64, _unb64
from tests.stack.helpers import IN_A_FRAME, eventually, open_session

LOGIN_COOKIE = "jupyterhub-hub-login"
APPEND_IFRAME = """(src) => {
    const frame = document.createElement("iframe");
    frame.src = src;
    document.body.append(frame);
}"""
PARALLEL = 50
ROUNDS = 3


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


async def ready_session(gateway: httpx.AsyncClient, who: str) -> dict[str, Any]:
    """A ready session of a new user of the demo tenant, with its hub user."""
    user_id = f"{who}-{uuid.uuid4().hex[:12]}"
    session = await open_session(gateway, user_id=user_id, notebook_name=who)
    assert session["status"] == "ready", session
    session["hub_user"] = hub_username("demo", user_id)
    return session


@pytest.fixture
async def victim(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> AsyncIterator[dict[str, Any]]:
    session = await ready_session(gateway, "victim")
    yield session
    await hub.delete(f"/users/{session['hub_user']}/server")


@pytest.fixture
async def attacker(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> AsyncIterator[dict[str, Any]]:
    session = await ready_session(gateway, "attacker")
    yield session
    await hub.delete(f"/users/{session['hub_user']}/server")


async def fresh_iframe_url(gateway: httpx.AsyncClient, session: dict[str, Any]) -> str:
    url: str = (await gateway.get(f"/v1/sessions/{session['id']}")).json()["iframe_url"]
    return url


def login_url(stack_settings: StackSettings, ticket: str) -> str:
    return f"{stack_settings.public_hub_url}{LOGIN_PATH}?{urlencode({QUERY_PARAMETER: ticket})}"


def ticket_of(url: str) -> str:
    return httpx.URL(url).params[QUERY_PARAMETER]


def page_of(session: dict[str, Any]) -> str:
    return f"/user/{session['hub_user']}/notebooks/{session['path']}"


def logged_in(response: httpx.Response) -> bool:
    """Whether this answer to a login URL set the hub's login cookie."""
    cookies = response.headers.get_list("set-cookie")
    return any(c.startswith(f"{LOGIN_COOKIE}=") and "Max-Age=0" not in c for c in cookies)


async def open_in_frame(url: str) -> httpx.Response:
    """One browser (its own cookie jar) opens ``url`` in an iframe; the first answer."""
    async with httpx.AsyncClient(timeout=60, headers=IN_A_FRAME) as browser:
        return await browser.get(url)


async def assert_refused(url: str) -> None:
    response = await open_in_frame(url)
    assert response.status_code == 403, (response.status_code, response.headers)
    assert not logged_in(response)


async def assert_logs_in(url: str, session: dict[str, Any]) -> None:
    response = await open_in_frame(url)
    assert response.status_code == 302, response.text
    assert logged_in(response)
    assert response.headers["location"] == page_of(session)


async def test_fifty_parallel_redemptions_log_in_exactly_one_browser(
    gateway: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    for _ in range(ROUNDS):
        url = await fresh_iframe_url(gateway, victim)
        answers = await asyncio.gather(*(open_in_frame(url) for _ in range(PARALLEL)))
        winners = [a for a in answers if a.status_code == 302 and logged_in(a)]
        assert len(winners) == 1, [a.status_code for a in answers]
        assert winners[0].headers["location"] == page_of(victim)
        refused = [a for a in answers if a.status_code == 403 and not logged_in(a)]
        assert len(refused) == PARALLEL - 1, [a.status_code for a in answers]


async def test_a_ticket_written_into_the_store_logs_nobody_in(
    stack_settings: StackSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    gateway: httpx.AsyncClient,
    victim: dict[str, Any],
) -> None:
    database = mongo[store.DATABASES["gateway"]]
    # What used to make a ticket valid: its digest in login_tickets.
    token = secrets.token_urlsafe(32)
    await database["login_tickets"].insert_one(
        {
            "_id": hashlib.sha256(token.encode()).hexdigest(),
            "hub_user": victim["hub_user"],
            "next_path": page_of(victim),
            "expires_at": datetime.now(UTC) + timedelta(minutes=1),
            "used_at": None,
        }
    )
    await assert_refused(login_url(stack_settings, token))
    # A ticket in today's format, signed with a key of the attacker's choosing.
    forged = Tickets(
        mongo, "unused", key=secrets.token_bytes(32), public_hub_url="", ttl_seconds=60
    ).mint(victim["hub_user"], page_of(victim), victim["id"])
    await assert_refused(login_url(stack_settings, forged))
    # Control: a genuine ticket for the same page logs in.
    await assert_logs_in(await fresh_iframe_url(gateway, victim), victim)


def with_claims(ticket: str, **changes: Any) -> str:
    """The ticket with some claims changed and its original signature kept."""
    version, encoded, mac = ticket.split(".")
    claims = json.loads(_unb64(encoded)) | changes
    return f"{version}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}.{mac}"


async def test_a_tampered_ticket_is_refused(
    stack_settings: StackSettings,
    gateway: httpx.AsyncClient,
    victim: dict[str, Any],
    attacker: dict[str, Any],
) -> None:
    ticket = ticket_of(await fresh_iframe_url(gateway, attacker))
    for changes in (
        {"u": victim["hub_user"], "p": page_of(victim)},
        {"p": f"/user/{attacker['hub_user']}/lab/tree/work"},
        {"s": victim["id"]},
        {"e": int(time.time()) + 3600},
    ):
        await assert_refused(login_url(stack_settings, with_claims(ticket, **changes)))
    # Control: the untouched ticket still works (refusals did not use it up).
    await assert_logs_in(login_url(stack_settings, ticket), attacker)


@pytest.fixture
def genuine_tickets(
    stack_settings: StackSettings, mongo: AsyncMongoClient[dict[str, Any]]
) -> Tickets:
    """Tickets signed with the gateway's own key, as a test with the key file can."""
    key = stack_settings.ticket_key_file.read_text().strip().encode()
    return Tickets(mongo, "unused", key=key, public_hub_url="", ttl_seconds=60)


async def test_an_expired_ticket_is_refused(
    stack_settings: StackSettings, genuine_tickets: Tickets, victim: dict[str, Any]
) -> None:
    def ticket(expires: float) -> str:
        claims = Claims(
            u=victim["hub_user"],
            p=page_of(victim),
            s=victim["id"],
            e=int(expires),
            n=secrets.token_urlsafe(16),
        )
        return login_url(stack_settings, genuine_tickets.sign(claims))

    await assert_refused(ticket(time.time() - 1))
    await assert_logs_in(ticket(time.time() + 30), victim)  # control: same ticket, in time


async def test_a_ticket_dies_with_its_session(
    stack_settings: StackSettings, gateway: httpx.AsyncClient, victim: dict[str, Any]
) -> None:
    used_before = await fresh_iframe_url(gateway, victim)
    unused = await fresh_iframe_url(gateway, victim)
    await assert_logs_in(used_before, victim)
    ended = await gateway.delete(f"/v1/sessions/{victim['id']}")
    assert ended.status_code == 204
    await assert_refused(unused)


async def frame_on_host_page(
    context: BrowserContext, stack_settings: StackSettings, url: str, session: dict[str, Any]
) -> Page:
    """The demo host page with ``url`` in an iframe, once it shows ``session``'s notebook."""
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{stack_settings.demo_port}/")
    await page.evaluate(APPEND_IFRAME, url)

    async def shown() -> bool:
        return any(page_of(session) in frame.url for frame in page.frames)

    await eventually(shown, timeout=60)
    return page


async def test_a_users_iframe_url_opened_top_level_does_not_replace_the_session(
    stack_settings: StackSettings,
    gateway: httpx.AsyncClient,
    chromium: Browser,
    victim: dict[str, Any],
    attacker: dict[str, Any],
) -> None:
    hub_url = stack_settings.public_hub_url
    context = await chromium.new_context()

    async def whoami() -> str:
        answer = await context.request.get(f"{hub_url}/hub/api/user")
        name: str = (await answer.json())["name"]
        return name

    async def login_cookie() -> list[Any]:
        return [c for c in await context.cookies() if c["name"] == LOGIN_COOKIE]

    try:
        # The victim opens their own notebook in an iframe on the host page.
        url = await fresh_iframe_url(gateway, victim)
        page = await frame_on_host_page(context, stack_settings, url, victim)
        assert await whoami() == victim["hub_user"]
        before = await login_cookie()
        assert before
        # The attacker's own iframe URL, opened by the victim as a link: from
        # another application (no initiator) and from a page of the same site.
        attack = await fresh_iframe_url(gateway, attacker)
        response = await page.goto(attack)
        assert response is not None and response.status == 403
        assert "only works inside the application" in await page.content()
        await page.goto(f"http://127.0.0.1:{stack_settings.demo_port}/")
        async with page.expect_navigation() as navigation:
            await page.evaluate("(url) => { window.location.href = url; }", attack)
        response = await navigation.value
        assert response is not None and response.status == 403
        # ...and framed by a page of another site (localhost is not 127.0.0.1's site).
        if not any("localhost" in origin for origin in stack_settings.allowed_origins):
            await page.goto(f"http://localhost:{stack_settings.demo_port}/")
            async with page.expect_response(lambda r: LOGIN_PATH in r.url) as framed:
                await page.evaluate(APPEND_IFRAME, attack)
            assert (await framed.value).status == 403
        assert await login_cookie() == before
        assert await whoami() == victim["hub_user"]
    finally:
        await context.close()
    # Control: the same URL inside an iframe on the host page logs the attacker in.
    context = await chromium.new_context()
    try:
        await frame_on_host_page(context, stack_settings, attack, attacker)
    finally:
        await context.close()
