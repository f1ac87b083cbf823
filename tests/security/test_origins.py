"""Per-user origins in chromium: one user's page cannot reach another user's server.

With ``NBEMBED_STACK_PER_USER_ORIGINS=true`` the hub runs with JupyterHub's
``subdomain_host`` and ``cookie_host_prefix_enabled``: the hub on
``jupyter.nbembed.localhost``, each user's server on
``<hub user>.jupyter.nbembed.localhost``, the demo host page on
``app.nbembed.localhost`` (all one site). Chromium reaches those names through
``--host-resolver-rules``; over plain HTTP it treats ``*.localhost`` as a
secure context, so it sends Fetch Metadata (the ticket login needs it) and
keeps ``__Host-`` cookies.

These tests run in ``tests/run.sh``'s second pytest run, on a stack started in
that mode; the first run (path-based default) deselects them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Frame, Page, expect

from infra.settings import StackSettings
from schemas import hub_username
from schemas.naming import user_origin
from tests.browser.conftest import launch_chromium
from tests.browser.test_demo_host import OPEN_TIMEOUT, open_new, type_and_run
from tests.security.kernel import user_server_token
from tests.stack.helpers import eventually, open_session

per_user_only = pytest.mark.per_user_origins
"""Needs a stack with NBEMBED_STACK_PER_USER_ORIGINS=true (tests/run.sh runs one);
deselected on any other (tests/security/conftest.py)."""

TENANT = "demo"  # the demo host page's tenant
HUB_LOGIN_COOKIE = "__Host-jupyterhub-hub-login"

ATTACK = """async ([bobOrigin, bobPath, bobPage]) => {
  // Stands in for a hostile output or page on alice's origin, in a browser that
  // also holds bob's cookies for bob's server. On one shared origin each step
  // works: frame bob's page, read its DOM and its _xsrf cookie, then call his API.
  const out = {};
  out["frame"] = await new Promise((resolve) => {
    const frame = document.createElement("iframe");
    const done = (value) => { frame.remove(); resolve(value); };
    frame.onload = () => {
      try {
        const doc = frame.contentDocument;
        done({ text: doc.body.innerText.slice(0, 4000), cookie: doc.cookie });
      } catch (e) {
        done({ error: String(e) });
      }
    };
    setTimeout(() => done({ error: "no load within 15 s" }), 15000);
    frame.src = bobPage;
    document.body.appendChild(frame);
  });
  const stolen = /_xsrf=([^;]+)/.exec(out["frame"].cookie || "");
  const xsrf = stolen ? { "X-XSRFToken": decodeURIComponent(stolen[1]) } : {};
  const attempt = async (name, url, init) => {
    try {
      const r = await fetch(url, { credentials: "include", ...init });
      out[name] = { status: r.status, url: r.url, body: (await r.text()).slice(0, 2000) };
    } catch (e) {
      out[name] = { error: String(e) };
    }
  };
  const write = {
    method: "PUT",
    headers: { "Content-Type": "application/json", ...xsrf },
    body: JSON.stringify({ type: "file", format: "text", content: "pwned" }),
  };
  const listing = `${bobPath}api/contents/work`;
  await attempt("read bob's origin", `${bobOrigin}${listing}`, { headers: xsrf });
  await attempt("read bob's path on this origin", listing, { headers: xsrf });
  await attempt("no-cors read", `${bobOrigin}${listing}`, { mode: "no-cors" });
  await attempt("write bob's origin", `${bobOrigin}${listing}/pwned.txt`, write);
  await attempt("write bob's path on this origin", `${listing}/pwned.txt`, write);
  out["document.cookie"] = document.cookie;
  return out;
}"""

OWN_READ = """async (url) => {
  // What Jupyter's own front end does: the API with the page's cookie and _xsrf.
  const xsrf = decodeURIComponent(/_xsrf=([^;]+)/.exec(document.cookie)[1]);
  const r = await fetch(url, { credentials: "include", headers: { "X-XSRFToken": xsrf } });
  return r.text();
}"""


@pytest.fixture
async def browser(stack_settings: StackSettings) -> AsyncIterator[Browser]:
    """Chromium that resolves the stack's test domain to 127.0.0.1."""
    domain = stack_settings.origins_domain
    rules = f"--host-resolver-rules=MAP *.{domain} 127.0.0.1, MAP {domain} 127.0.0.1"
    async with launch_chromium([rules]) as launched:
        yield launched


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    await context.close()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def notebook_frame(page: Page, origin: str) -> Frame:
    """The host page's notebook frame, once it is on ``origin``."""

    async def on_origin() -> bool:
        return any(origin_of(frame.url) == origin for frame in page.frames)

    await eventually(on_origin, timeout=60)
    return next(frame for frame in page.frames if origin_of(frame.url) == origin)


async def open_on_host_page(
    context: BrowserContext, settings: StackSettings, user: str, name: str
) -> tuple[Page, Frame, str]:
    """A tab of the demo host page with ``user``'s new notebook open; (page, frame, origin)."""
    page = await context.new_page()
    await open_new(page, f"{settings.host_page_origin}/", user, name)
    origin = origin_of_user(settings, user)
    return page, await notebook_frame(page, origin), origin


def origin_of_user(settings: StackSettings, user: str) -> str:
    """The origin of ``user``'s server: their own, or the hub's in the default mode."""
    if settings.subdomain_host is None:
        return origin_of(settings.browser_hub_url)
    return user_origin(hub_username(TENANT, user), settings.subdomain_host)


async def stop_servers(hub: httpx.AsyncClient, *users: str) -> None:
    for user in users:
        await hub.delete(f"/users/{hub_username(TENANT, user)}/server")


@per_user_only
def test_the_stack_runs_in_per_user_origin_mode(stack_settings: StackSettings) -> None:
    assert stack_settings.subdomain_host == "http://jupyter.nbembed.localhost:8000"
    assert stack_settings.allowed_origins == ["http://app.nbembed.localhost:8090"]


@per_user_only
async def test_iframe_urls_are_the_hubs_and_the_notebook_is_on_the_users_origin(
    context: BrowserContext,
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
) -> None:
    user = f"origins-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username(TENANT, user)
    try:
        session = await open_session(gateway, user_id=user)
        assert session["status"] == "ready", session
        assert session["iframe_url"].startswith(f"{stack_settings.subdomain_host}/hub/")
        assert stack_settings.subdomain_host is not None
        own = user_origin(hub_user, stack_settings.subdomain_host)
        assert session["notebook_origin"] == own
        # Fetch Metadata reaches the hub on *.localhost: opened as a page, not in
        # a frame, the iframe URL is refused (login CSRF stays closed).
        top_level = await (await context.new_page()).goto(session["iframe_url"])
        assert top_level is not None and top_level.status == 403
        # The proxy routes the user's server only for the user's host: the path on
        # the hub's host (or another user's) does not reach it.
        token = await user_server_token(hub, hub_user)
        auth = {"Authorization": f"token {token}"}
        base = f"{stack_settings.public_hub_url}/user/{hub_user}/api/contents/work"
        async with httpx.AsyncClient(headers=auth, timeout=30) as http:
            on_own_host = await http.get(base, headers={"Host": urlsplit(own).netloc})
            assert on_own_host.status_code == 200, on_own_host.text
            assert on_own_host.json()["type"] == "directory"
            on_hub_host = await http.get(base)
            assert on_hub_host.status_code != 200 or "content" not in on_hub_host.text
    finally:
        await stop_servers(hub, user)


@per_user_only
async def test_the_notebook_opens_runs_and_saves_on_the_users_own_origin(
    context: BrowserContext,
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
) -> None:
    user = f"origins-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username(TENANT, user)
    try:
        # "Ready" needs the ticket login inside the host page's iframe (Fetch
        # Metadata: same-site frame) and the bridge's hello at the user's origin.
        page, frame, origin = await open_on_host_page(context, stack_settings, user, "Origins")
        assert frame.url.startswith(f"{origin}/user/{hub_user}/notebooks/")
        notebook = page.frame_locator("#notebook iframe")
        await type_and_run(notebook, "print(6 * 7)", "42")
        await page.click("#save")  # the host page's Save, through the SDK and the bridge
        await expect(page.locator("#status")).to_have_text("Saved revision 2", timeout=OPEN_TIMEOUT)

        cookies = await context.cookies()
        hub_host = urlsplit(stack_settings.browser_hub_url).hostname
        (login,) = [c for c in cookies if c["name"] == HUB_LOGIN_COOKIE]
        assert (login["domain"], login["path"], login["secure"]) == (hub_host, "/", True)
        (server,) = [c for c in cookies if hub_user in c["name"]]
        assert server["name"] == f"__Host-jupyterhub-user-{hub_user}"
        assert (server["domain"], server["path"], server["secure"]) == (
            urlsplit(origin).hostname,
            "/",
            True,
        )
        assert server["httpOnly"]
    finally:
        await stop_servers(hub, user)


async def test_a_script_on_alices_origin_cannot_read_or_write_bobs_server(
    context: BrowserContext,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
) -> None:
    alice, bob = (f"origins-{who}-{uuid.uuid4().hex[:8]}" for who in ("alice", "bob"))
    # alice's server never starts: her origin's page is all the attack needs.
    bob_hub = hub_username(TENANT, bob)
    secret = f"Secret {uuid.uuid4().hex[:8]}"
    try:
        # Bob works in one tab of the host page: his browser holds his cookies.
        _bob_page, bob_frame, bob_origin = await open_on_host_page(
            context, stack_settings, bob, secret
        )
        bob_path = f"/user/{bob_hub}/"
        own_read = await bob_frame.evaluate(OWN_READ, f"{bob_path}api/contents/work")
        assert secret in own_read  # control: with bob's cookies, bob's listing is readable
        # Bob, in the same browser, opens a page alice's server serves (she controls
        # her server: any page, any script, at her origin). Her server's answer is
        # played by the test, so bob's browser has no session of alice at all.
        alice_origin = origin_of_user(stack_settings, alice)
        evil = f"{alice_origin}/user/{hub_username(TENANT, alice)}/files/evil.html"
        await context.route(
            evil, lambda route: route.fulfill(content_type="text/html", body="<p>hello</p>")
        )
        alice_page = await context.new_page()
        await alice_page.goto(evil)
        alice_frame = alice_page.main_frame
        bob_page = bob_frame.url
        result: dict[str, Any] = await alice_frame.evaluate(
            ATTACK, [bob_origin, bob_path, bob_page]
        )
        leaked = json.dumps(result)
        print("attack from alice's origin:", leaked[:3000])  # shown with -s
        if not stack_settings.per_user_origins:
            # The default: every server on the hub's origin. The same script reads
            # bob's notebooks (what the README says per-user origins close).
            assert alice_origin == bob_origin
            assert secret in leaked, result
            return
        assert alice_origin != bob_origin
        assert secret not in leaked, result
        assert bob_hub not in result["document.cookie"], result
        for name in ("read bob's origin", "write bob's origin"):
            assert "error" in result[name], result  # CORS: the browser hides the answer
        no_cors = result["no-cors read"]
        assert no_cors.get("status") in (0, None) and not no_cors.get("body"), result
        for name in ("read bob's path on this origin", "write bob's path on this origin"):
            answer = result[name]
            assert "error" in answer or answer["status"] not in (200, 201), result
        assert "error" in result["frame"], result

        # Bob's server cookie is __Host-: only ever sent to bob's host.
        bob_cookies = [c for c in await context.cookies() if bob_hub in c["name"]]
        assert f"__Host-jupyterhub-user-{bob_hub}" in {c["name"] for c in bob_cookies}
        for cookie in bob_cookies:  # the login cookie and any OAuth state cookie
            assert cookie["name"].startswith("__Host-"), cookie
            assert (cookie["domain"], cookie["path"]) == (urlsplit(bob_origin).hostname, "/")
        sent_to_alice = {c["name"] for c in await context.cookies(alice_origin)}
        assert not any(bob_hub in name for name in sent_to_alice), sent_to_alice
        assert HUB_LOGIN_COOKIE not in sent_to_alice

        # Nothing was written on bob's server.
        token = await user_server_token(hub, bob_hub)
        async with httpx.AsyncClient(timeout=30) as http:
            listing = await http.get(
                f"{stack_settings.public_hub_url}{bob_path}api/contents/work",
                headers={"Authorization": f"token {token}", "Host": urlsplit(bob_origin).netloc},
            )
        assert listing.status_code == 200, listing.text
        names = {item["name"] for item in listing.json()["content"]}
        assert "pwned.txt" not in names and f"{secret}.ipynb" in names, names
    finally:
        await stop_servers(hub, bob)
