"""A restore reaches the notebook open in a real browser: after the host restores an older
revision, the page's SDK (following its session) reloads the notebook by itself, and the
next save raises no "file changed on disk" dialog (without the reload, Jupyter's next save
stalls on exactly that dialog)."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import FrameLocator, Page, expect

from infra.settings import StackSettings
from schemas import hub_username
from tests.browser.test_demo_host import type_and_run
from tests.browser.test_restricted import _mount, _open

RELOADED_BY_ITSELF = """
() => {
  window.reloadedByItself = new Promise((resolve) =>
    window.embed.addEventListener("reloaded", (e) => resolve(e.detail), { once: true }));
}
"""


async def replace_and_run(frame: FrameLocator, code: str, expected: str) -> None:
    """Replace the cell's code, then run it until its output shows ``expected``."""
    editor = frame.locator(".jp-Cell .cm-content").last
    await editor.click()
    await editor.press("Control+a")
    await editor.press("Delete")
    await type_and_run(frame, code, expected)


async def test_a_restored_revision_reloads_in_the_open_notebook_without_a_dialog(
    page: Page, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"reload-{uuid.uuid4().hex[:10]}"
    try:
        session = await _open(gateway, user)
        _, frame, _ = await _mount(page, stack_settings, gateway, session)
        await type_and_run(frame, "print('first' + '-version')", "first-version")
        first = await page.evaluate("() => window.embed.save()")
        await replace_and_run(frame, "print('second' + '-version')", "second-version")
        second = await page.evaluate("() => window.embed.save()")
        assert second["revision"] > first["revision"]

        await page.evaluate(RELOADED_BY_ITSELF)
        restored = await gateway.post(
            f"/v1/notebooks/{session['notebook_id']}/revisions/{first['revision']}/restore",
            json={"author": user},
        )
        assert restored.status_code == 200, restored.text
        assert restored.json()["sessions_updated"] == 1
        assert (await gateway.get(f"/v1/sessions/{session['id']}")).json()["restore_id"]

        # No call from the host: the SDK heard of the restore and reloaded.
        reloaded = await page.evaluate("() => window.reloadedByItself")
        assert reloaded["path"] == session["path"]
        assert reloaded["restoredRevision"] == restored.json()["revision"]
        editor = frame.locator(".jp-Cell .cm-content").last
        await expect(editor).to_have_text("print('first' + '-version')")
        await expect(frame.locator(".jp-OutputArea-output").last).to_contain_text("first-version")
        # reload() itself still works (a host that does not follow the session calls it).
        assert (await page.evaluate("() => window.embed.reload()"))["path"] == session["path"]

        # The document knows the file's new timestamp: saving asks nothing.
        after = await page.evaluate("() => window.embed.save()")
        assert await frame.locator(".jp-Dialog").count() == 0
        assert after["revision"] >= restored.json()["revision"]
        latest = (await gateway.get(f"/v1/notebooks/{session['notebook_id']}")).json()
        sources = [cell["source"] for cell in latest["content"]["cells"]]
        assert "print('first' + '-version')" in sources
        assert not any("second" in source for source in sources)
    finally:
        await hub.delete(f"/users/{hub_username(stack_settings.tenants[0], user)}/server")
