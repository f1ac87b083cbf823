"""What the SDK's Embed tells a host page, in real chromium: the events a host relies on.

One session goes through a host's day: the notebook is ready (and its kernel
idle) before the user types; a run shows busy then idle; an edit makes it
dirty and a save clean; a Ctrl-S inside Jupyter is one ``saved`` and one
``stored`` with its revision (``changed`` true, then false for a save with
nothing new); the page's ``save()`` likewise; ending the session is an
``ended`` and an ``error`` with code ``ended``, after which ``save()`` rejects
with that code. Then frames that never work: a used login ticket, an expired
one, and a page whose origin is not allowed; each gives ``error`` with its code.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import FrameLocator, Page, expect
from pymongo import AsyncMongoClient

from infra.settings import StackSettings
from schemas import hub_username
from schemas.login_ticket import LOGIN_PATH, QUERY_PARAMETER
from services.gateway.tickets import Claims, Tickets
from tests.browser.test_demo_host import OPEN_TIMEOUT, demo_url
from tests.stack.helpers import IN_A_FRAME, open_session, wait_for_final_status

# Records every event of the Embed, in order, in window.events.
MOUNT = """
async ([sdk, gateway, session, token, extra]) => {
  const { mount } = await import(sdk);
  const holder = document.createElement("div");
  holder.style.cssText = "width:1200px;height:800px";
  document.body.replaceChildren(holder);
  window.events = [];
  window.embed = mount(holder, {
    gatewayUrl: gateway, sessionId: session.id, iframeUrl: session.iframe_url,
    browserToken: token, notebookOrigin: session.notebook_origin,
    restricted: session.restricted, ...extra,
  });
  for (const type of ["ready", "kernel", "dirty", "saved", "stored", "error", "ended"]) {
    window.embed.addEventListener(type, (e) => {
      const detail = { ...e.detail };
      if (detail.error) detail.error = detail.error.code;
      window.events.push({ type, ...detail });
    });
  }
}
"""

SAVE = """
async () => {
  try {
    return { ok: await window.embed.save() };
  } catch (error) {
    return { code: error.code };
  }
}
"""


async def mount(
    page: Page, stack_settings: StackSettings, session: dict[str, Any], token: str
) -> None:
    """The SDK from the gateway, on the demo host page (an allowed origin)."""
    gateway_url = f"http://127.0.0.1:{stack_settings.gateway_port}"
    await page.goto(demo_url(stack_settings))
    await page.evaluate(MOUNT, [f"{gateway_url}/sdk/nbembed.js", gateway_url, session, token, {}])


async def events(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate("() => window.events")
    return found


async def wait_for(page: Page, predicate: str, timeout: float = OPEN_TIMEOUT) -> None:
    """Until some recorded event satisfies the JS ``predicate`` (on ``e``)."""
    await page.wait_for_function(f"() => window.events.some((e) => {predicate})", timeout=timeout)


async def since(page: Page, start: int) -> list[dict[str, Any]]:
    return (await events(page))[start:]


async def open_ready(gateway: httpx.AsyncClient, user: str) -> dict[str, Any]:
    created = await gateway.post("/v1/sessions", json={"user_id": user, "notebook_name": "Events"})
    assert created.status_code == 202, created.text
    session = await open_session_again(gateway, created.json()["id"])
    session["browser_token"] = created.json()["browser_token"]
    return session


async def open_session_again(gateway: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    """The ready session, read now (a fresh single-use iframe URL)."""
    session = await wait_for_final_status(gateway, session_id)
    assert session["status"] == "ready", session
    return session


async def ctrl_s(page: Page, frame: FrameLocator, start: int) -> dict[str, Any]:
    """Jupyter's own save; the one ``stored`` it gives (after exactly one ``saved``)."""
    await frame.locator(".jp-Notebook").first.press("Control+s")
    await page.wait_for_function(
        f"() => window.events.slice({start}).some((e) => e.type === 'stored')", timeout=60_000
    )
    after = await since(page, start)
    saved = [e for e in after if e["type"] == "saved"]
    stored = [e for e in after if e["type"] == "stored"]
    assert len(saved) == 1 and saved[0]["byUser"] is True, after
    assert len(stored) == 1 and stored[0]["byUser"] is True, after
    assert isinstance(stored[0]["revision"], int)
    return stored[0]


async def test_a_host_hears_ready_kernel_dirty_saves_and_the_end(
    page: Page, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"events-{uuid.uuid4().hex[:10]}"
    try:
        session = await open_ready(gateway, user)
        await mount(page, stack_settings, session, session["browser_token"])
        await wait_for(page, "e.type === 'ready'")
        first = await events(page)
        assert [e["type"] for e in first[:2]] == ["ready", "kernel"], first
        assert first[0]["kernel"] == "idle" and first[1]["status"] == "idle", first

        # Ready means the user can run: one Ctrl+Enter, no retry, gives the output.
        frame = page.frame_locator("iframe").last
        editor = frame.locator(".jp-Cell .cm-content").last
        await editor.click()
        await editor.press_sequentially("print(6 * 7)")
        await expect(editor).to_have_text("print(6 * 7)")
        start = len(await events(page))
        await editor.press("Control+Enter")
        await expect(frame.locator(".jp-OutputArea-output").last).to_contain_text("42")
        await page.wait_for_function(
            f"""() => {{
                const kernel = window.events.slice({start}).filter((e) => e.type === 'kernel');
                const busy = kernel.findIndex((e) => e.status === 'busy');
                return busy >= 0 && kernel.slice(busy).some((e) => e.status === 'idle');
            }}"""
        )
        dirty = [e["dirty"] for e in await events(page) if e["type"] == "dirty"]
        assert dirty and dirty[-1] is True, await events(page)

        # Ctrl-S inside the notebook: saved once, stored with a new revision, clean again.
        start = len(await events(page))
        stored = await ctrl_s(page, frame, start)
        assert stored["changed"] is True
        await page.wait_for_function(
            f"() => window.events.slice({start}).some((e) => e.type === 'dirty' && !e.dirty)"
        )
        latest = (await gateway.get(f"/v1/notebooks/{session['notebook_id']}")).json()
        assert latest["revision"] == stored["revision"]

        # Again with nothing new: the same revision, changed false.
        again = await ctrl_s(page, frame, len(await events(page)))
        assert again["changed"] is False and again["revision"] == stored["revision"]

        # The page's own save(), after an edit: one saved, one stored, a new revision.
        await editor.press("End")
        await editor.press_sequentially("  # kept")
        await wait_for(page, "e.type === 'dirty' && e.dirty")
        start = len(await events(page))
        result = await page.evaluate(SAVE)
        assert result["ok"]["changed"] is True, result
        assert result["ok"]["revision"] == stored["revision"] + 1
        after = await since(page, start)
        assert [e["byUser"] for e in after if e["type"] == "saved"] == [False], after
        assert [(e["revision"], e["byUser"]) for e in after if e["type"] == "stored"] == [
            (result["ok"]["revision"], False)
        ], after

        # The host ends the session: ended, an error with code "ended", save() refused.
        assert (await gateway.delete(f"/v1/sessions/{session['id']}")).status_code == 204
        await wait_for(page, "e.type === 'error' && e.code === 'ended'", timeout=60_000)
        assert any(e["type"] == "ended" for e in await events(page))
        assert await page.evaluate(SAVE) == {"code": "ended"}
    finally:
        await hub.delete(f"/users/{hub_username(stack_settings.tenants[0], user)}/server")


async def test_a_used_ticket_is_an_error_with_its_code_and_save_refuses(
    page: Page, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"ticket-{uuid.uuid4().hex[:10]}"
    try:
        session = await open_ready(gateway, user)
        # Someone used the iframe URL before the page (a copy, a reload of an old URL).
        async with httpx.AsyncClient(headers=IN_A_FRAME, timeout=30) as other:
            used = await other.get(session["iframe_url"])
            assert used.status_code in (200, 302, 303), used.status_code
        await mount(page, stack_settings, session, session["browser_token"])
        await wait_for(page, "e.type === 'error'", timeout=30_000)
        assert [e["code"] for e in await events(page) if e["type"] == "error"] == ["ticket-used"]
        assert await page.evaluate(SAVE) == {"code": "ticket-used"}
    finally:
        await hub.delete(f"/users/{hub_username(stack_settings.tenants[0], user)}/server")


async def test_an_expired_ticket_is_an_error_with_its_code_and_save_refuses(
    page: Page,
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """A page that mounts an iframe URL too late (a tab left open) hears why it is blank."""
    user = f"expired-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    try:
        session = await open_ready(gateway, user)
        # The ticket the gateway would have issued for this session, a minute ago.
        key = stack_settings.ticket_key_file.read_text().strip().encode()
        tickets = Tickets(mongo, "unused", key=key, public_hub_url="", ttl_seconds=60)
        claims = Claims(
            u=hub_user,
            p=f"/user/{hub_user}/notebooks/{session['path']}",
            s=session["id"],
            e=int(time.time() - 1),
            n=secrets.token_urlsafe(16),
        )
        late = f"{stack_settings.public_hub_url}{LOGIN_PATH}?"
        session["iframe_url"] = late + urlencode({QUERY_PARAMETER: tickets.sign(claims)})
        await mount(page, stack_settings, session, session["browser_token"])
        await wait_for(page, "e.type === 'error'", timeout=30_000)
        errors = [e["code"] for e in await events(page) if e["type"] == "error"]
        assert errors == ["ticket-expired"]
        assert await page.evaluate(SAVE) == {"code": "ticket-expired"}
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_a_page_on_an_origin_not_allowed_hears_frame_refused(
    page: Page, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    if any("localhost" in origin for origin in stack_settings.allowed_origins):
        pytest.skip("localhost is an allowed origin in this configuration")
    user = f"foreign-{uuid.uuid4().hex[:10]}"
    try:
        session = await open_session(gateway, user_id=user, notebook_name="Foreign")
        assert session["status"] == "ready", session
        # The gateway serves the SDK only to allowed origins (CORS): the page brings its own copy.
        source = (await gateway.get("/sdk/nbembed.js")).text
        await page.goto(demo_url(stack_settings, "localhost"))
        sdk = await page.evaluate(
            "(src) => URL.createObjectURL(new Blob([src], { type: 'text/javascript' }))", source
        )
        await page.evaluate(
            MOUNT,
            [
                sdk,
                f"http://127.0.0.1:{stack_settings.gateway_port}",
                session,
                "nbembed-unused",
                {"helloTimeoutMs": 8000, "followSession": False},
            ],
        )
        await wait_for(page, "e.type === 'error'", timeout=30_000)
        assert [e["code"] for e in await events(page) if e["type"] == "error"] == ["frame-refused"]
        assert await page.evaluate(SAVE) == {"code": "frame-refused"}
    finally:
        await hub.delete(f"/users/{hub_username(stack_settings.tenants[0], user)}/server")
