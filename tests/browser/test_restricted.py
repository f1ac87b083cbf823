"""Restricted-data mode in real chromium: a restricted tenant and an open one, side by side.

Each tenant's user gets a notebook through the gateway and the SDK on the demo
host page, with an input file the host attached (``work/inputs/data.csv``, ``inputs/data.csv``
beside the notebook). The
test then reads, from inside the notebook's own frame with the user's own
cookie, every route of the README's table (``ROUTES`` in ``nbembed_embed``):
403 where restricted, 200 where not. It looks at the page's menus and buttons
(no download, export, print, terminal in restricted mode; no hub or Lab escape
in any embed), checks the SDK's sandbox, runs a cell that reads the input file
and tries Kafka and the store (refused in both modes: the egress filter), finds
the input file read-only, saves, and reads the run back from the audit trail.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Frame, FrameLocator, Page, expect

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.browser.test_demo_host import OPEN_TIMEOUT, type_and_run
from tests.security.kernel import user_server_token
from tests.stack.helpers import eventually, open_session, wait_for_final_status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "hub" / "singleuser_python"))
from nbembed_embed import ROUTES

DATA = "id,secret\n1,the restricted data\n"

MOUNT = """
async ([gateway, session, iframeUrl, token]) => {
  const { mount } = await import(`${gateway}/sdk/nbembed.js`);
  const holder = document.createElement("div");
  holder.style.cssText = "width:1200px;height:800px";
  document.body.replaceChildren(holder);
  window.embed = mount(holder, {
    gatewayUrl: gateway, sessionId: session.id, iframeUrl, browserToken: token,
    restricted: session.restricted,
  });
  return window.embed.iframe.getAttribute("sandbox");
}
"""

OVERWRITE = """
async (path) => {
  const config = JSON.parse(document.getElementById("jupyter-config-data").textContent);
  const response = await fetch(path, {
    method: "PUT",
    headers: { Authorization: `token ${config.token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ type: "file", format: "text", content: "forged" }),
  });
  return response.status;
}
"""

# One line (the editor auto-indents): the input file, then Kafka and the store.
PROBE = (
    "import socket as s; print(open('inputs/data.csv').read().splitlines()[1], "
    "*[s.socket().connect_ex(('127.0.0.1', p)) for p in (9092, 27017)])"
)
PROBED = "1,the restricted data 111 111"  # ECONNREFUSED twice

STATUSES = """
async (paths) => {
  // The token the page itself uses for its requests (cookie-only API calls
  // need the XSRF token since JupyterHub 4.1).
  const config = JSON.parse(document.getElementById("jupyter-config-data").textContent);
  const headers = { Authorization: `token ${config.token}` };
  const answers = {};
  for (const path of paths) {
    try {
      answers[path] = (await fetch(path, { headers, redirect: "manual" })).status;
    } catch (error) {
      answers[path] = String(error);
    }
  }
  return answers;
}
"""

# Menu entries and buttons, by the text the page shows.
ESCAPES = (
    "Hub Control Panel",
    "Log Out",
    "Shut Down",
    "JupyterLab",
    "Open JupyterLab",
    "File Browser",
)
DOWNLOADS = ("Download", "Save and Export Notebook As", "Print…", "New Terminal", "Terminal")


@pytest.fixture
async def vault(stack_settings: StackSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway API as the stack's restricted tenant."""
    tenant = stack_settings.restricted_tenants[0]
    key = stack.api_key_file(stack_settings, tenant).read_text().strip()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as client:
        yield client


async def _open(gateway: httpx.AsyncClient, user: str, **extra: Any) -> dict[str, Any]:
    created = await gateway.post(
        "/v1/sessions", json={"user_id": user, "notebook_name": "Restricted", **extra}
    )
    assert created.status_code == 202, created.text
    session = await wait_for_final_status(gateway, created.json()["id"])
    assert session["status"] == "ready", session
    session["browser_token"] = created.json()["browser_token"]
    return session


async def _place_data(hub: httpx.AsyncClient, stack_settings: StackSettings, hub_user: str) -> None:
    """Upload the data file with the user's own token (data comes in, in both modes)."""
    token = await user_server_token(hub, hub_user)
    url = f"{stack_settings.public_hub_url}/user/{quote(hub_user)}/api/contents/work/data.csv"
    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as http:
        put = await http.put(url, json={"type": "file", "format": "text", "content": DATA})
        assert put.status_code in (200, 201), put.text


async def _mount(
    page: Page, stack_settings: StackSettings, gateway: httpx.AsyncClient, session: dict[str, Any]
) -> tuple[str, FrameLocator, Frame]:
    """Mount the session with the SDK on the demo host page; the sandbox, frame and Frame."""
    fresh = (await gateway.get(f"/v1/sessions/{session['id']}")).json()
    await page.goto(f"http://127.0.0.1:{stack_settings.demo_port}/")
    gateway_url = f"http://127.0.0.1:{stack_settings.gateway_port}"
    sandbox: str = await page.evaluate(
        MOUNT, [gateway_url, fresh, fresh["iframe_url"], session["browser_token"]]
    )
    frame = page.frame_locator("iframe").last
    await expect(frame.locator(".jp-Cell .cm-content").first).to_be_editable(timeout=OPEN_TIMEOUT)
    notebook = next(f for f in page.frames if "/notebooks/" in f.url)
    return sandbox, frame, notebook


async def _menu_texts(frame: FrameLocator) -> set[str]:
    """Every visible entry of every top menu, and the toolbar's buttons."""
    texts: set[str] = set()
    bar = frame.locator(".lm-MenuBar-itemLabel")
    for index in range(await bar.count()):
        await bar.nth(index).click()
        # Items a menu hides (isVisible false) are rendered with lm-mod-hidden.
        items = frame.locator(".lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel")
        texts.update(await items.all_inner_texts())
        await frame.locator("body").press("Escape")
    texts.update(await frame.locator(".jp-Toolbar-item").all_inner_texts())
    texts.update(await frame.locator("#top-panel").all_inner_texts())
    return {text.strip() for text in texts if text.strip()}


async def _audited(client: httpx.AsyncClient, user: str, restricted: bool) -> None:
    """The tenant's audit trail holds the run; refused downloads only where restricted."""
    seen = {"session.requested", "input.attached", "kernel.started", "save.stored"}
    if restricted:
        seen.add("download.refused")

    async def recorded() -> bool:
        page = await client.get("/v1/audit", params={"user_id": user, "limit": 100})
        kinds = {record["kind"] for record in page.json()["items"]}
        return seen <= kinds and (restricted or "download.refused" not in kinds)

    await eventually(recorded, timeout=30)


def _paths(server: str, notebook: str) -> dict[str, tuple[int, int]]:
    """Each route of the table on this server: (restricted status, unrestricted status)."""
    return {
        server + route.path.format(notebook=notebook): (route.restricted, route.unrestricted)
        for route in ROUTES
    }


async def test_restricted_and_open_tenants_side_by_side(
    page: Page,
    gateway: httpx.AsyncClient,
    vault: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
) -> None:
    user = f"restricted-{uuid.uuid4().hex[:10]}"
    users = {True: hub_username("vault", user), False: hub_username("demo", user)}
    try:
        for restricted, client in ((True, vault), (False, gateway)):
            data = await client.post(
                "/v1/inputs", params={"name": "data.csv"}, content=DATA.encode()
            )
            assert data.status_code == 201, data.text
            session = await _open(client, user, inputs=[data.json()["id"]])
            assert session["restricted"] is restricted
            sandbox, frame, notebook = await _mount(page, stack_settings, client, session)

            assert "allow-popups-to-escape-sandbox" not in sandbox
            assert ("allow-downloads" in sandbox) is not restricted

            server = f"/user/{quote(users[restricted])}"
            paths = _paths(server, session["path"].rsplit("/", 1)[-1])
            answers = await notebook.evaluate(STATUSES, list(paths))
            expected = {path: codes[0 if restricted else 1] for path, codes in paths.items()}
            assert answers == expected

            texts = await _menu_texts(frame)
            assert "Save Notebook" in texts, texts
            assert not texts & set(ESCAPES), texts & set(ESCAPES)
            if restricted:
                assert not texts & set(DOWNLOADS), texts & set(DOWNLOADS)
            else:
                assert {"Download", "Save and Export Notebook As"} <= texts, texts

            # Input files are read-only in either mode; the kernel reads them and
            # reaches neither Kafka nor the store; the notebook runs and saves.
            input_file = f"{server}/api/contents/work/inputs/data.csv"
            assert await notebook.evaluate(OVERWRITE, input_file) == 403
            await type_and_run(frame, PROBE, PROBED)
            stored = await page.evaluate("() => window.embed.save()")
            assert stored["revision"] >= 2

            await _audited(client, user, restricted)
    finally:
        for name in users.values():
            await hub.delete(f"/users/{name}/server")


async def test_a_session_can_be_stricter_than_its_tenant_never_weaker(
    gateway: httpx.AsyncClient,
    vault: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
) -> None:
    weaker = await vault.post("/v1/sessions", json={"user_id": "u", "restricted": False})
    assert weaker.status_code == 422
    assert weaker.headers["content-type"].startswith("application/problem+json")

    user = f"stricter-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username("demo", user)
    try:
        open_one = await open_session(gateway, user_id=user, notebook_name="Open")
        assert open_one["restricted"] is False
        await _place_data(hub, stack_settings, hub_user)
        token = await user_server_token(hub, hub_user)
        data = f"{stack_settings.public_hub_url}/user/{quote(hub_user)}/files/work/data.csv"
        async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as http:
            assert (await http.get(data)).status_code == 200
            # A restricted session of the same user: the running server is restarted
            # restricted, and stays so while any restricted session is open.
            strict = await open_session(
                gateway, user_id=user, notebook_name="Strict", restricted=True
            )
            assert strict["restricted"] is True
            model = (await hub.get(f"/users/{hub_user}")).json()["servers"][""]
            assert model["user_options"]["restricted"] is True
            assert (await http.get(data)).status_code == 403
            # Another open session of the user does not weaken the running server.
            again = await open_session(gateway, user_id=user, notebook_name="Open again")
            assert again["status"] == "ready"
            assert (await http.get(data)).status_code == 403

            async def still_restricted() -> bool:
                found = (await hub.get(f"/users/{hub_user}")).json()["servers"][""]
                return bool(found["user_options"]["restricted"] is True)

            await eventually(still_restricted, timeout=5)
    finally:
        await hub.delete(f"/users/{hub_user}/server")
