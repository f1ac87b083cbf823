"""The minimal host app of examples/node-host (another stack than the demo) in a real browser.

The integration guide points host developers at it, so it must keep working:
open a new notebook from its page, run a cell, save with the page's button,
reopen the stored notebook and find the output.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Page, expect

from infra.settings import REPO_ROOT, StackSettings
from schemas import hub_username
from tests.browser.test_demo_host import OPEN_TIMEOUT, the_notebook, type_and_run

PORT = 8190  # one of the stack's default allowed origins (infra/settings.py)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the node host exited at start"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the node host did not listen on {port}")


@pytest.fixture
def node_host(stack_settings: StackSettings, api_key: str) -> Iterator[str]:
    node = shutil.which("node")
    assert node, "node is missing (infra/install.sh checks for Node 20)"
    env = {
        **os.environ,
        "NBEMBED_GATEWAY_URL": f"http://127.0.0.1:{stack_settings.gateway_port}",
        "NBEMBED_API_KEY": api_key,
        "PORT": str(PORT),
    }
    env.pop("NBEMBED_API_KEY_FILE", None)
    process = subprocess.Popen(
        [node, str(REPO_ROOT / "examples" / "node-host" / "server.mjs")],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_listening(PORT, process)
        yield f"http://127.0.0.1:{PORT}/"
    finally:
        process.terminate()
        process.wait(10)


async def test_the_node_host_opens_runs_saves_and_reopens(
    page: Page, node_host: str, gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> None:
    user = f"node-{uuid.uuid4().hex[:12]}"
    try:
        await page.goto(node_host)
        await page.fill("#user", user)
        await page.click("#open")
        await expect(page.locator("#status")).to_have_text("Ready", timeout=OPEN_TIMEOUT)
        await type_and_run(page.frame_locator("#notebook iframe"), "print(2 ** 10)", "1024")

        await page.click("#save")
        await expect(page.locator("#status")).to_have_text(
            "Saved as revision 2", timeout=OPEN_TIMEOUT
        )
        stored = await the_notebook(gateway, user)
        assert stored["latest_revision"] == 2
        content = (await gateway.get(f"/v1/notebooks/{stored['id']}")).json()["content"]
        assert any(cell["source"] == "print(2 ** 10)" for cell in content["cells"])

        # Reopen the stored notebook from the page's list: the output comes back.
        await page.fill("#user", user)
        await page.locator("#user").dispatch_event("change")
        await expect(page.locator(f"#notebooks option[value='{stored['id']}']")).to_have_count(
            1, timeout=OPEN_TIMEOUT
        )
        await page.select_option("#notebooks", stored["id"])
        await page.click("#open")
        await expect(page.locator("#status")).to_have_text("Ready", timeout=OPEN_TIMEOUT)
        reopened = page.frame_locator("#notebook iframe")
        # "Ready" is the session's; the notebook page then loads in the frame (seconds).
        await expect(reopened.locator(".jp-OutputArea-output").first).to_have_text(
            "1024", timeout=OPEN_TIMEOUT
        )
    finally:
        await hub.delete(f"/users/{hub_username('demo', user)}/server")
