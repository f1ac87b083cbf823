"""Bursts of new users: ``python -m tests.bench.burst [--users N]`` (stack up).

``--users`` new users (100 by default) are requested within one second, all at
once, with the hub's spawn limit as the stack sets it (429s waited out by both
routes). Measured: failures, and the wall time from the first request until
every user has a ready notebook. Baseline, in the same run, for as many other
new users: the blog's direct route through the hub's REST API (create the
user, start the server, follow its progress to ready, create the folder and
the notebook). It runs on the stack as it is: ``NBEMBED_STACK_REPLICAS=1`` or
``=2`` before ``python -m infra up`` gives 1 or 2 provisioners (and of each other
service). Each user's server is stopped and its hub user deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.hops import LogMark, laps, print_shares
from tests.stack.helpers import wait_for_final_status


class Burst:
    def __init__(self, settings: StackSettings) -> None:
        token = settings.service_token_file.read_text().strip()
        key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
        self.settings = settings
        self.hub = httpx.AsyncClient(
            base_url=f"{settings.public_hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=600,
            limits=limits,
        )
        self.contents = httpx.AsyncClient(
            base_url=settings.public_hub_url,
            headers={"Authorization": f"token {token}"},
            timeout=600,
            limits=limits,
        )
        self.gateway = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
            limits=limits,
        )
        self.sessions: set[str] = set()

    async def direct(self, name: str) -> None:
        """The blog's route for one new user, waiting out the hub's 429s as nbembed does."""
        created = await self.hub.post(f"/users/{name}")
        assert created.status_code == 201, created.text
        while True:
            started = await self.hub.post(f"/users/{name}/server")
            if started.status_code != 429:
                break
            await asyncio.sleep(float(started.headers.get("Retry-After", "30")))
        assert started.status_code in (201, 202), started.text
        if started.status_code == 202:
            await follow_progress(self.hub, name)
        base = f"/user/{name}/api/contents"
        folder = await self.contents.put(f"{base}/work", json={"type": "directory"})
        assert folder.status_code in (200, 201), folder.text
        notebook = await self.contents.post(f"{base}/work", json={"type": "notebook"})
        assert notebook.status_code == 201, notebook.text

    async def nbembed(self, user_id: str) -> None:
        created = await self.gateway.post(
            "/v1/sessions", json={"user_id": user_id, "notebook_name": "burst"}
        )
        assert created.status_code == 202, created.text
        self.sessions.add(created.json()["id"])
        final = await wait_for_final_status(self.gateway, created.json()["id"], timeout=900)
        assert final["status"] == "ready", final

    async def forget(self, name: str) -> None:
        await self.hub.delete(f"/users/{name}/server")
        for _ in range(60):
            if (await self.hub.delete(f"/users/{name}")).status_code in (204, 404):
                return
            await asyncio.sleep(1)


async def follow_progress(hub: httpx.AsyncClient, name: str) -> None:
    """Follow the hub's progress stream of ``name``'s spawn until it says ready."""
    async with hub.stream("GET", f"/users/{name}/server/progress") as progress:
        async for line in progress.aiter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("ready"):
                return
    raise AssertionError(f"server of {name} never became ready")


async def burst(names: list[str], route: Callable[[str], Awaitable[None]]) -> tuple[float, int]:
    """Every user requested at once; (seconds until the last is ready, failures)."""
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(route(name) for name in names), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    for failure in failures[:3]:
        print(f"  failure: {failure!r}")
    return time.perf_counter() - started, len(failures)


async def main(users: int) -> None:
    settings = stack.adopt_running_replicas(StackSettings())
    bench = Burst(settings)
    run = uuid.uuid4().hex[:6]
    direct_names = [f"burst-d{i}-{run}" for i in range(users)]
    nbembed_ids = [f"burst-n{i}-{run}" for i in range(users)]
    mark = LogMark(settings.logs_dir, "provisioner")
    sync = LogMark(settings.logs_dir, "sync")
    try:
        direct, direct_failed = await burst(direct_names, bench.direct)
        print(f"direct: {direct:.1f} s, {direct_failed} failed; stopping its servers", flush=True)
        await asyncio.gather(*(bench.forget(name) for name in direct_names))
        ours, ours_failed = await burst(nbembed_ids, bench.nbembed)
        print(f"nbembed: {ours:.1f} s, {ours_failed} failed")
    finally:
        hub_users = [hub_username("demo", user_id) for user_id in nbembed_ids]
        await asyncio.gather(*(bench.forget(name) for name in direct_names + hub_users))

    print(
        f"burst of {users} new users, hub concurrent_spawn_limit "
        f"{settings.concurrent_spawn_limit}, {settings.replicas} replica(s) of each service"
    )
    print(f"  direct (hub REST API)  {direct:8.1f} s  failures {direct_failed}")
    print(f"  nbembed                {ours:8.1f} s  failures {ours_failed}")
    print(f"  ratio nbembed/direct: {ours / direct:.2f}x")
    records = mark.records("server ready", "session_id", bench.sessions)
    placed = sync.records("session ready", "session_id", bench.sessions)
    print(f"  sessions seen by the provisioner(s): {len(records)}, by sync: {len(placed)}")
    hops = {f"provisioner: {name}": values for name, values in laps(records).items()}
    hops |= {f"sync: {name}": values for name, values in laps(placed).items()}
    if hops:
        print_shares("nbembed, per session", hops, [ours])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.users))
