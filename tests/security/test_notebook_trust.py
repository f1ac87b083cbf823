"""Stored XSS across users: no notebook is ever trusted by nbembed's doing.

Attack from issue 7: alice's kernel writes cell metadata ``trusted: true``
and script outputs into her notebook's file and saves it; nbembed stored it,
restored it on bob's server, bob's server signed it (all cells trusted), and
its scripts ran in bob's page, on the origin all servers share. Now the
stored revision carries no trust, and bob's page, in real chromium inside the
host page's iframe, runs none of the scripts.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from playwright.async_api import Browser, expect

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session

# Alice's kernel plants a "trusted" notebook with scripts in its outputs, then
# reports the save with her server's own token, as the post-save hook does.
PLANT = """
import json, os, httpx
html = ('<b>payload-html</b><img src="x" '
        'onerror="window.__pwned = 1; document.title = \\'pwned\\'">')
script = "window.__pwned = 2; document.title = 'pwned';"
nb = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"signature": "sha256:" + "ab" * 32},
    "cells": [{
        "cell_type": "code", "id": "evil", "execution_count": 1, "source": "1",
        "metadata": {"trusted": True},
        "outputs": [
            {"output_type": "display_data", "metadata": {},
             "data": {"text/html": html, "text/plain": "payload-html"}},
            {"output_type": "display_data", "metadata": {},
             "data": {"application/javascript": script, "text/plain": "payload-js"}},
        ],
    }],
}
json.dump(nb, open(PATH, "w"))
answer = httpx.post(os.environ["NBEMBED_GATEWAY_URL"] + "/internal/server-saves",
                    json={"path": PATH},
                    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
print(answer.status_code)
"""

APPEND_IFRAME = """(src) => {
    const frame = document.createElement("iframe");
    frame.src = src;
    frame.style.width = "1000px";
    frame.style.height = "700px";
    document.body.append(frame);
}"""


async def stored_content(gateway: httpx.AsyncClient, notebook_id: str) -> dict[str, Any]:
    answer = await gateway.get(f"/v1/notebooks/{notebook_id}")
    assert answer.status_code == 200, answer.text
    content: dict[str, Any] = answer.json()["content"]
    return content


async def test_a_trusted_notebook_from_one_user_runs_no_script_for_another(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    chromium: Browser,
) -> None:
    run = uuid.uuid4().hex[:10]
    alice, bob = f"trust-alice-{run}", f"trust-bob-{run}"
    alice_hub = hub_username(stack_settings.tenants[0], alice)
    planted = await open_session(gateway, user_id=alice, notebook_name="Shared")
    assert planted["status"] == "ready", planted

    token = await user_server_token(hub, alice_hub)
    async with Kernel(stack_settings.public_hub_url, alice_hub, token) as kernel:
        result = await kernel.run(f"PATH = {planted['path']!r}\n" + PLANT)
    assert result.error is None and result.stdout.strip() == "202", result

    async def stored() -> bool:
        answer = await gateway.get(f"/v1/notebooks/{planted['notebook_id']}")
        return answer.status_code == 200 and "payload-js" in json.dumps(answer.json())

    await eventually(stored)
    content = await stored_content(gateway, planted["notebook_id"])
    assert "signature" not in content["metadata"]
    assert all("trusted" not in cell["metadata"] for cell in content["cells"])
    assert "window.__pwned" in json.dumps(content)  # the outputs themselves are kept

    opened = await open_session(gateway, user_id=bob, notebook_id=planted["notebook_id"])
    assert opened["status"] == "ready", opened
    fresh = await gateway.get(f"/v1/sessions/{opened['id']}")
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{stack_settings.demo_port}/")
        await page.evaluate(APPEND_IFRAME, fresh.json()["iframe_url"])
        frame = page.frame_locator("iframe").last
        # The outputs render (sanitised HTML, the script's plain-text fallback)...
        await expect(frame.get_by_text("payload-html").first).to_be_visible(timeout=90_000)
        await expect(frame.get_by_text("payload-js").first).to_be_visible(timeout=30_000)
        await page.wait_for_timeout(1000)  # time for any handler to have fired
        notebook_frame = next(f for f in page.frames if "/user/" in f.url)
        # ...and none of the scripts ran, in bob's notebook page or the host page.
        assert await notebook_frame.evaluate("() => window.__pwned") is None
        assert await notebook_frame.evaluate("() => document.title") != "pwned"
        assert await page.evaluate("() => window.__pwned") is None
    finally:
        await context.close()
