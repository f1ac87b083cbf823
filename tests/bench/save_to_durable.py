"""Save-to-durable latency: ``python -m tests.bench.save_to_durable [--saves N] [--crowd N...]``.

(Stack up.) nbembed: from the host's save (``POST /v1/sessions/{id}/saves``, what the SDK's
``save()`` sends once Jupyter confirms) until ``GET /v1/saves/{id}?wait=`` says
stored, with 1 user and with 20 users saving at once; each save changes the
notebook, so each stores a new revision. Baseline, in the same run: the direct
route a host backend would take, GET the notebook from the contents API and
insert it into MongoDB. Also, for one user, the whole ``save()`` of the SDK in
a real browser (postMessage to the bridge, Jupyter's save, then the above).
Each nbembed series ends with each hop's share, from sync's own timing fields
(``--crowd 20 100`` measures 100 users at once too; ``--no-browser`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
import uuid
from typing import Any

import httpx
from playwright.async_api import async_playwright
from pymongo import AsyncMongoClient

from infra import stack, store
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.hops import LogMark, laps, print_shares
from tests.bench.report import print_ratio, print_table
from tests.browser.conftest import CHROMIUM_ARGS
from tests.stack.helpers import open_session


class User:
    def __init__(self, bench: Bench, name: str) -> None:
        self.bench, self.name = bench, name
        self.hub_user = hub_username("demo", name)

    async def open(self) -> None:
        self.session = await open_session(self.bench.gateway, user_id=self.name, notebook_name="b")
        assert self.session["status"] == "ready"
        self.url = f"{self.bench.hub_url}/user/{self.hub_user}/api/contents/{self.session['path']}"

    async def edit(self, i: int) -> None:
        notebook = {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {
                    "id": "c",
                    "cell_type": "code",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": f"x = {i}  # {uuid.uuid4().hex}",
                }
            ],
        }
        put = await self.bench.contents.put(
            self.url, json={"type": "notebook", "format": "json", "content": notebook}
        )
        assert put.status_code == 200

    async def nbembed_save(self) -> float:
        started = time.perf_counter()
        created = await self.bench.gateway.post(f"/v1/sessions/{self.session['id']}/saves")
        assert created.status_code == 202
        self.bench.posts[created.json()["id"]] = time.perf_counter() - started
        async with asyncio.timeout(120):
            while True:
                # A long-poll may answer early, still pending, when another gateway
                # replica's wake-up for this save (its creation) arrives: ask again.
                outcome = await self.bench.gateway.get(
                    f"/v1/saves/{created.json()['id']}", params={"wait": 30}
                )
                if outcome.json()["status"] != "pending":
                    break
        assert outcome.json()["status"] == "stored", outcome.text
        return time.perf_counter() - started

    async def direct_save(self) -> float:
        started = time.perf_counter()
        got = await self.bench.contents.get(self.url, params={"content": 1, "type": "notebook"})
        await self.bench.baseline.insert_one(
            {"user": self.hub_user, "content": got.json()["content"], "at": time.time()}
        )
        return time.perf_counter() - started


class Bench:
    def __init__(self, settings: StackSettings) -> None:
        token = settings.service_token_file.read_text().strip()
        key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
        self.settings = settings
        self.hub_url = settings.public_hub_url
        self.contents = httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=60)
        self.hub = httpx.AsyncClient(
            base_url=f"{self.hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        self.gateway = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        self.mongo: AsyncMongoClient[dict[str, Any]] = store.admin_client(settings)
        self.baseline = self.mongo["nbembed_bench"]["direct_saves"]
        self.posts: dict[str, float] = {}
        """Seconds until the gateway answered 202, by save id."""


async def rounds(users: list[User], saves: int, kind: str) -> list[float]:
    timings: list[float] = []
    for i in range(saves):
        await asyncio.gather(*(user.edit(i) for user in users))
        # Let the servers' own save hooks (one stored revision per edit) settle first.
        await asyncio.sleep(0.3 + 0.02 * len(users))
        method = "nbembed_save" if kind == "nbembed" else "direct_save"
        timings += await asyncio.gather(*(getattr(user, method)() for user in users))
    return timings


async def nbembed_rounds(bench: Bench, users: list[User], saves: int, title: str) -> list[float]:
    """`rounds` of nbembed saves, then each hop's share from sync's log."""
    mark = LogMark(bench.settings.logs_dir, "sync")
    bench.posts.clear()
    timings = await rounds(users, saves, "nbembed")
    await asyncio.sleep(0.5)  # the log line follows the stored event
    records = mark.records("notebook stored", "save_id", set(bench.posts))
    hops = {"gateway: POST until 202": list(bench.posts.values())}
    hops |= {f"sync: {name}": values for name, values in laps(records).items()}
    mean_rest = statistics.mean(timings) - sum(statistics.mean(v) for v in hops.values())
    hops["rest: stored event to answer"] = [max(0.0, mean_rest)]
    print_shares(title, hops, timings)
    return timings


async def open_all(users: list[User]) -> None:
    """Open every user's session, ten at a time (the hub spawns them in parallel)."""
    for start in range(0, len(users), 10):
        await asyncio.gather(*(user.open() for user in users[start : start + 10]))


async def browser_saves(bench: Bench, saves: int) -> list[float]:
    """The SDK's save() on the demo page, timed in the page itself."""
    timings: list[float] = []
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{bench.settings.demo_port}/")
        await page.fill("#user", f"bench-browser-{uuid.uuid4().hex[:8]}")
        await page.click("#new")
        await page.wait_for_function(
            "document.getElementById('status').textContent === 'Ready'", timeout=90_000
        )
        frame = page.frame_locator("#notebook iframe")
        for i in range(saves):
            await frame.locator(".jp-Cell .cm-content").first.click()
            await page.keyboard.type(f"{i}")
            seconds = await page.evaluate(
                "async () => { const t = performance.now(); await window.nbembedDemo.save();"
                " return (performance.now() - t) / 1000; }"
            )
            timings.append(seconds)
        await browser.close()
    return timings


async def main(saves: int, crowds: list[int], browser: bool) -> None:
    bench = Bench(StackSettings())
    run = uuid.uuid4().hex[:8]
    one = [User(bench, f"bench-save-{run}")]
    crowd = [User(bench, f"bench-crowd-{run}-{i}") for i in range(max(crowds))]
    await open_all(one + crowd)
    each = max(1, saves // 4)
    results = {
        "direct, 1 user": await rounds(one, saves, "direct"),
        "nbembed, 1 user": await nbembed_rounds(bench, one, saves, "nbembed, 1 user"),
    }
    for size in crowds:
        label = f"{size} users"
        results[f"direct, {label}"] = await rounds(crowd[:size], each, "direct")
        results[f"nbembed, {label}"] = await nbembed_rounds(
            bench, crowd[:size], each, f"nbembed, {label}"
        )
    if browser:
        results["SDK save() in chromium, 1 user"] = await browser_saves(bench, saves)
    for user in one + crowd:
        await bench.hub.delete(f"/users/{user.hub_user}/server")
    await bench.mongo.drop_database("nbembed_bench")

    print(f"save to durable (seconds); 1 user: {saves} saves, crowds: {each} each")
    print_table(results, 0.99)
    for users in ["1 user", *(f"{size} users" for size in crowds)]:
        print_ratio(users, results[f"nbembed, {users}"], results[f"direct, {users}"], 0.99)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--crowd", type=int, nargs="+", default=[20])
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.saves, args.crowd, not args.no_browser))
