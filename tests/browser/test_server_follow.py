"""The SDK tells the host page when the session's server goes, and the page reopens it."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from infra.settings import StackSettings
from schemas import hub_username
from tests.browser.test_demo_host import OPEN_TIMEOUT, demo_url, open_new

ENDED_WITHIN_MS = 60_000
"""The stop's notice, three Kafka hops, and the SDK's long-poll answering."""


async def test_the_page_hears_its_server_stopped_and_reopens_the_notebook(
    page: Page, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"browser-{uuid.uuid4().hex[:12]}"
    hub_user = hub_username("demo", user)
    ops_token = stack_settings.hub_ops_token_file.read_text().strip()
    try:
        await open_new(page, demo_url(stack_settings), user, "Followed")
        # An operator stops the server through the hub API, behind nbembed's back.
        stopped = await hub.delete(
            f"/users/{hub_user}/server", headers={"Authorization": f"token {ops_token}"}
        )
        assert stopped.status_code in (202, 204), stopped.text
        # The SDK's "ended" event reaches the page with the code (demo/static/index.html).
        status = page.locator("#status")
        await expect(status).to_contain_text(
            "Session ended (server-stopped)", timeout=ENDED_WITHIN_MS
        )
        await expect(page.locator("#save")).to_be_disabled()
        await page.click("#reopen")
        await expect(status).to_have_text("Ready", timeout=OPEN_TIMEOUT)
        frame = page.frame_locator("#notebook iframe")
        await expect(frame.locator(".jp-Cell .cm-content").first).to_be_editable(
            timeout=OPEN_TIMEOUT
        )
    finally:
        await hub.delete(f"/users/{hub_user}/server")
