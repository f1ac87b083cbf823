"""Read-only views and diffs: a notebook's outputs run nothing in a reader's browser, and no
tenant reads, diffs or restores another tenant's notebook.

Attack: alice's kernel writes outputs made to run in whoever renders them (a
``<script>``, an ``onerror=`` handler, ``javascript:`` links, a ``text/html``
output with an iframe, an SVG with ``onload``, JavaScript outputs,
raw HTML in a markdown cell) and saves. The view the gateway serves must keep
none of them executable: checked in the HTML itself and in real chromium,
which loads the page with scripts allowed and no CSP (the sanitiser alone must
hold), and with the gateway's own headers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session

PWN = "window.__pwned = (window.__pwned || 0) + 1; document.title = 'pwned'"
HOSTILE_HTML = (
    "<b>marker-html</b>"
    f"<script>{PWN}</script>"
    f'<img src="x" onerror="{PWN}">'
    f'<a href="javascript:{PWN}">marker-link</a>'
    f'<a href=" JaVaScRiPt:{PWN}">marker-link-2</a>'
    f'<iframe src="javascript:parent.{PWN}" srcdoc="<script>parent.{PWN}</script>"></iframe>'
    f'<svg onload="{PWN}"><script>{PWN}</script></svg>'
    f'<div onmouseover="{PWN}" style="position:fixed;inset:0">cover</div>'
    f'<form action="javascript:{PWN}"><button>go</button></form>'
    '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">'
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'
    '<base href="javascript:alert(1)//">'
)
HOSTILE_NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    # Widget state is where nbconvert would load a widget manager's scripts from.
    "metadata": {
        "widgets": {
            "application/vnd.jupyter.widget-state+json": {
                "state": {"m": {"model_name": "HTMLModel", "state": {"value": HOSTILE_HTML}}},
                "version_major": 2,
                "version_minor": 0,
            }
        }
    },
    "cells": [
        {
            "cell_type": "markdown",
            "id": "md",
            "metadata": {},
            "source": f'# marker-title\n<img src=x onerror="{PWN}"> [bad](javascript:{PWN})',
        },
        {
            "cell_type": "code",
            "id": "evil",
            "execution_count": 1,
            "metadata": {"trusted": True},
            "source": "print('marker-source')",
            "outputs": [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/html": HOSTILE_HTML, "text/plain": "x"},
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"application/javascript": PWN, "text/plain": "marker-js-fallback"},
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{PWN}">'
                        f"<script>{PWN}</script></svg>"
                    },
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                        "text/plain": "marker-widget-fallback",
                    },
                },
                {"output_type": "stream", "name": "stdout", "text": "marker-output\n"},
            ],
        },
    ],
}
WRITE = """
import json
json.dump(json.loads(NOTEBOOK), open(PATH, "w"))
print("ok")
"""


class Inventory(HTMLParser):
    """Every tag, and every attribute that could run or load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.active: list[tuple[str, str, str]] = []
        self.raw_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.raw_tags.append(self.get_starttag_text() or "")
        for name, value in attrs:
            text = (value or "").strip().lower()
            loads = name in ("src", "href", "action", "data", "formaction", "srcdoc")
            if name.startswith("on") or (loads and text.startswith(("javascript:", "data:text"))):
                self.active.append((tag, name, value or ""))


async def plant(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    settings: StackSettings,
    tenant: str,
    **extra: Any,
) -> tuple[str, str]:
    """A user of ``tenant`` whose kernel saved the hostile notebook: (notebook id, hub user)."""
    user_id = f"views-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username(tenant, user_id)
    session = await open_session(gateway, user_id=user_id, notebook_name="Hostile", **extra)
    assert session["status"] == "ready", session
    token = await user_server_token(hub, hub_user)
    code = f"NOTEBOOK = {json.dumps(HOSTILE_NOTEBOOK)!r}\nPATH = {session['path']!r}\n" + WRITE
    async with Kernel(settings.public_hub_url, hub_user, token) as kernel:
        result = await kernel.run(code)
    assert result.error is None and result.stdout.strip() == "ok", result
    requested = await gateway.post(f"/v1/sessions/{session['id']}/saves")
    outcome = await gateway.get(f"/v1/saves/{requested.json()['id']}", params={"wait": 30})
    assert outcome.json()["status"] == "stored", outcome.text
    return session["notebook_id"], hub_user


@pytest.fixture
async def hostile(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> AsyncIterator[str]:
    notebook_id, hub_user = await plant(gateway, hub, stack_settings, stack_settings.tenants[0])
    try:
        yield notebook_id
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_a_view_keeps_nothing_of_an_outputs_scripts(
    gateway: httpx.AsyncClient, hostile: str, chromium: Browser
) -> None:
    answer = await gateway.get(f"/v1/notebooks/{hostile}/view")
    assert answer.status_code == 200, answer.text
    page = answer.text
    # What the notebook shows is there (else the checks below would prove nothing).
    for marker in ("marker-title", "marker-source", "marker-html", "marker-link", "marker-output"):
        assert marker in page, marker
    inventory = Inventory()
    inventory.feed(page)
    assert inventory.active == []
    dangerous = {"script", "iframe", "object", "embed", "form", "base", "svg", "button"}
    assert inventory.tags & dangerous == set()
    assert 'http-equiv="refresh"' not in page
    # Nowhere in markup: a `javascript:` the reader sees as text (the markdown link
    # left unrendered) runs nothing; in any attribute or tag it would be a hole.
    assert not any("javascript:" in tag.lower() for tag in inventory.raw_tags)

    headers = answer.headers
    assert headers["content-security-policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
    )
    assert headers["x-content-type-options"] == "nosniff"

    # In chromium, with scripts allowed and no CSP header: nothing runs, even when
    # the reader clicks the links and hovers over everything.
    context = await chromium.new_context(java_script_enabled=True)
    try:
        tab = await context.new_page()
        await tab.set_content(page.replace("Content-Security-Policy", "x-removed"))
        await tab.mouse.move(200, 200)
        for link in await tab.locator("a").all():
            await link.click(timeout=2000, no_wait_after=True)
        await tab.wait_for_timeout(500)
        assert await tab.evaluate("window.__pwned") is None
        assert await tab.title() != "pwned"
    finally:
        await context.close()


async def test_no_tenant_views_diffs_or_restores_another_tenants_notebook(
    hostile: str, stack_settings: StackSettings, other_api_key: str
) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {other_api_key}"},
        timeout=30,
    ) as other:
        for method, path, params in (
            ("GET", f"/v1/notebooks/{hostile}/view", {}),
            ("GET", f"/v1/notebooks/{hostile}/view", {"revision": 1}),
            ("GET", f"/v1/notebooks/{hostile}/diff", {"from": 1, "to": 2}),
            ("POST", f"/v1/notebooks/{hostile}/revisions/1/restore", {}),
            ("GET", f"/v1/notebooks/{hostile}/revisions", {}),
        ):
            answer = await other.request(method, path, params=params)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "marker" not in answer.text


def assert_without_outputs(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert "marker-source" in answer.text and "marker-title" in answer.text
    for output in ("marker-html", "marker-output", "marker-js-fallback"):
        assert output not in answer.text, output
    assert "Outputs are not shown" in answer.text


async def test_a_restricted_tenants_view_shows_no_outputs(
    hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    tenant = stack_settings.restricted_tenants[0]
    key = stack.api_key_file(stack_settings, tenant).read_text().strip()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as vault:
        notebook_id, hub_user = await plant(vault, hub, stack_settings, tenant)
        try:
            assert_without_outputs(await vault.get(f"/v1/notebooks/{notebook_id}/view"))
        finally:
            await hub.delete(f"/users/{hub_user}/server")


async def test_a_revision_saved_in_a_restricted_session_views_without_outputs(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    """A session stricter than its (open) tenant: its revisions stay restricted, restored too."""
    tenant = stack_settings.tenants[0]
    notebook_id, hub_user = await plant(gateway, hub, stack_settings, tenant, restricted=True)
    try:
        latest = (await gateway.get(f"/v1/notebooks/{notebook_id}")).json()
        assert latest["restricted"] is True
        assert_without_outputs(await gateway.get(f"/v1/notebooks/{notebook_id}/view"))
        # Back to the empty first revision, then forward again: the copy stays restricted.
        for revision in (1, latest["revision"]):
            restored = await gateway.post(
                f"/v1/notebooks/{notebook_id}/revisions/{revision}/restore"
            )
            assert restored.status_code == 200 and restored.json()["changed"], restored.text
        again = restored.json()["revision"]
        assert again == latest["revision"] + 2
        copy = (await gateway.get(f"/v1/notebooks/{notebook_id}?revision={again}")).json()
        assert (copy["restricted"], copy["restored_from"]) == (True, latest["revision"])
        view = await gateway.get(f"/v1/notebooks/{notebook_id}/view", params={"revision": again})
        assert_without_outputs(view)
    finally:
        await hub.delete(f"/users/{hub_user}/server")
