"""First cell: ``python -m tests.bench.first_cell [--runs N]`` (stack up, chromium).

From mounting a session's iframe on a host page (the demo page's origin) to
the output of a first cell, typed and run with Shift+Enter as soon as the
editor appears, in Debian's chromium. A run that was dropped (the cell's
prompt shows no ``[*]`` because the page had no kernel yet) is run again in
place every 0.3 s, as a user would press again; the dropped first presses are
counted.

Cases, each measured in the same run and alternated so neither side always
meets a busier machine:

- server running (one user whose server runs; each run opens a new notebook)
  or new user (the server starts for the session);
- kernel prestart on (sync started the notebook's kernel before ready, the
  default) or off, the baseline: the benchmark shuts the kernel sync started
  down through the user's server before it mounts the iframe, so the page
  starts its own, as with ``NBEMBED_SYNC_PRESTART_KERNEL=false`` (sync's
  setting is per process; this compares both in one run without restarting it);
- browser cache cold (a fresh browser context per run) or warm (one context
  reused, after one untimed load), server running only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.report import percentile, print_table
from tests.browser.conftest import launch_chromium
from tests.browser.frames import first_editor, first_prompt, mount, notebook, output_with
from tests.stack.helpers import wait_for_final_status
from tests.stack.kernel_sessions import for_path

CODE = "print(6 * 7)"
RETRY_SECONDS = 0.3
OPEN_TIMEOUT_MS = 90_000


class Bench:
    def __init__(self, settings: StackSettings) -> None:
        token = settings.service_token_file.read_text().strip()
        key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
        self.settings = settings
        self.tenant = settings.tenants[0]
        self.hub_url = settings.public_hub_url
        self.demo = f"http://127.0.0.1:{settings.demo_port}/"
        self.hub = httpx.AsyncClient(
            base_url=f"{self.hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=120,
        )
        self.gateway = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )
        self.drops: dict[str, int] = {}

    async def open(self, user_id: str) -> dict[str, Any]:
        """A new notebook for ``user_id``, ready (its iframe URL carries a fresh ticket)."""
        created = await self.gateway.post(
            "/v1/sessions", json={"user_id": user_id, "notebook_name": "first cell"}
        )
        assert created.status_code == 202, created.text
        final = await wait_for_final_status(self.gateway, created.json()["id"])
        assert final["status"] == "ready", final
        return final

    async def user_server(self, user_id: str) -> httpx.AsyncClient:
        """The user's own server, with a short-lived token of that user for it alone."""
        hub_user = hub_username(self.tenant, user_id)
        minted = await self.hub.post(
            f"/users/{quote(hub_user)}/tokens",
            json={
                "expires_in": 600,
                "scopes": [f"access:servers!server={hub_user}/"],
                "note": "nbembed first-cell benchmark",
            },
        )
        assert minted.status_code == 201, minted.text
        return httpx.AsyncClient(
            base_url=f"{self.hub_url}/user/{quote(hub_user)}/api",
            headers={"Authorization": f"token {minted.json()['token']}"},
            timeout=60,
        )

    async def end_kernel(self, server: httpx.AsyncClient, path: str) -> None:
        """Shut the notebook's kernel down (its Jupyter session), waiting until it is gone."""
        for session in for_path((await server.get("/sessions")).json(), path):
            ended = await server.delete(f"/sessions/{session['id']}")
            assert ended.status_code == 204, ended.text

    async def run(
        self, page: Page, user_id: str, *, prestart: bool, case: str
    ) -> tuple[float, float]:
        """One session: mount its iframe, run the first cell; seconds from mount to the
        editor and to the output."""
        session = await self.open(user_id)
        async with await self.user_server(user_id) as server:
            if not prestart:
                await self.end_kernel(server, session["path"])
            mounted = await mount(page, session["iframe_url"])
            frame = notebook(page)
            editor = first_editor(frame)
            await editor.wait_for(timeout=OPEN_TIMEOUT_MS)
            appeared = time.time()
            await editor.click()
            await page.keyboard.insert_text(CODE)
            await page.keyboard.press("Shift+Enter")
            output = output_with(frame, "42")
            first = True
            while True:
                try:
                    await output.wait_for(timeout=RETRY_SECONDS * 1000)
                    break
                except PlaywrightTimeout:
                    prompt = await first_prompt(frame).text_content() or ""
                    if "*" in prompt:
                        continue  # accepted, running: wait for its output
                    if first:
                        self.drops[case] = self.drops.get(case, 0) + 1
                        first = False
                    await editor.click()
                    await page.keyboard.press("Control+Enter")
            answered = time.time()
            if session["path"]:  # the next run starts from a server without this kernel
                await self.end_kernel(server, session["path"])
        await self.gateway.delete(f"/v1/sessions/{session['id']}")
        return appeared - mounted, answered - mounted

    async def stop(self, user_id: str) -> None:
        await self.hub.delete(f"/users/{hub_username(self.tenant, user_id)}/server")


@asynccontextmanager
async def fresh_page(browser: Browser, demo: str) -> AsyncIterator[Page]:
    """A new browser context (empty cache, no cookies) on the host page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        await page.goto(demo)
        yield page
    finally:
        await context.close()


async def main(runs: int) -> None:
    settings = StackSettings()
    bench = Bench(settings)
    tag = uuid.uuid4().hex[:8]
    anchor_user = f"bench-cell-{tag}"
    # The running server's user keeps one session open throughout, so ending a
    # run's session never stops the server.
    anchor = await bench.open(anchor_user)
    results: dict[str, list[float]] = {}
    editors: dict[str, list[float]] = {}

    def record(case: str, seconds: tuple[float, float]) -> None:
        editors.setdefault(case, []).append(seconds[0])
        results.setdefault(case, []).append(seconds[1])

    async with launch_chromium() as browser:
        warm_context: BrowserContext = await browser.new_context(
            viewport={"width": 1280, "height": 900}
        )
        warm_page = await warm_context.new_page()
        await warm_page.goto(bench.demo)
        await bench.run(warm_page, anchor_user, prestart=True, case="warm-up")  # fills the cache
        bench.drops.pop("warm-up", None)
        for i in range(runs):
            order = [True, False] if i % 2 == 0 else [False, True]
            for prestart in order:
                mode = "on" if prestart else "off"
                case = f"server running, cold cache, prestart {mode}"
                async with fresh_page(browser, bench.demo) as page:
                    record(case, await bench.run(page, anchor_user, prestart=prestart, case=case))
                case = f"server running, warm cache, prestart {mode}"
                record(case, await bench.run(warm_page, anchor_user, prestart=prestart, case=case))
            for prestart in order:
                mode = "on" if prestart else "off"
                case = f"new user, cold cache, prestart {mode}"
                user = f"bench-cell-{tag}-{i}-{mode}"
                async with fresh_page(browser, bench.demo) as page:
                    record(case, await bench.run(page, user, prestart=prestart, case=case))
                await bench.stop(user)
        await warm_context.close()
    await bench.gateway.delete(f"/v1/sessions/{anchor['id']}")
    await bench.stop(anchor_user)

    ordered = dict(sorted(results.items()))
    print(f"first cell: iframe mounted to the cell's output, {runs} runs per case (seconds)")
    print_table(ordered, 0.9)
    for case in sorted({name.rsplit(", prestart", 1)[0] for name in ordered}):
        on, off = ordered[f"{case}, prestart on"], ordered[f"{case}, prestart off"]
        print(
            f"ratio prestart on/off (baseline), {case}: "
            f"p50 {percentile(on, 0.5) / percentile(off, 0.5):.2f}x, "
            f"p90 {percentile(on, 0.9) / percentile(off, 0.9):.2f}x"
        )
    print("of which until the editor appeared (the page's load; no kernel involved)")
    print_table(dict(sorted(editors.items())), 0.9)
    for case in ordered:
        print(f"first Shift+Enter dropped, {case}: {bench.drops.get(case, 0)} of {runs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.runs))
