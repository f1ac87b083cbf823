"""A cell run as soon as the editor appears answers: the kernel was started with the session.

Issue 11 measured a Shift+Enter pressed right away silently dropped in 7 of
10 runs: the page had not yet started its kernel. Sync now starts it while it
places the notebook, and the page connects to that running kernel instead of
starting one (tests/stack/test_kernel_prestart.py checks the server's side).
"""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from infra.settings import StackSettings
from schemas import hub_username
from tests.browser.frames import first_editor, mount, notebook, output_with
from tests.browser.test_demo_host import OPEN_TIMEOUT, demo_url
from tests.security.kernel import user_server_token
from tests.stack.helpers import open_session
from tests.stack.kernel_sessions import for_path, server_kernels, server_sessions


async def test_shift_enter_as_soon_as_the_editor_appears_runs_on_the_one_kernel(
    page: Page, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"browser-{uuid.uuid4().hex[:12]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    hub_url = stack_settings.public_hub_url
    try:
        session = await open_session(gateway, user_id=user, notebook_name="first cell")
        assert session["status"] == "ready", session
        token = await user_server_token(hub, hub_user)
        [started] = for_path(await server_sessions(hub_url, hub_user, token), session["path"])

        await page.goto(demo_url(stack_settings))
        await mount(page, session["iframe_url"])
        frame = notebook(page)
        editor = first_editor(frame)
        await expect(editor).to_be_editable(timeout=OPEN_TIMEOUT)
        await editor.click()
        await page.keyboard.insert_text("print(6 * 7)")
        await expect(editor).to_have_text("print(6 * 7)")
        await page.keyboard.press("Shift+Enter")  # once: no retry
        await expect(output_with(frame, "42")).to_be_visible(timeout=30_000)

        # The page ran it on the kernel sync started, and started none of its own.
        [used] = for_path(await server_sessions(hub_url, hub_user, token), session["path"])
        assert used["kernel"]["id"] == started["kernel"]["id"]
        kernels = await server_kernels(hub_url, hub_user, token)
        assert [kernel["id"] for kernel in kernels] == [started["kernel"]["id"]]
        assert kernels[0]["connections"] >= 1  # the page's websocket
    finally:
        await hub.delete(f"/users/{hub_user}/server")
