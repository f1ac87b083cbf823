"""Time to notebook: ``python -m tests.bench.time_to_notebook [--runs N] [--warm-runs N]``.

``--pause S`` seconds between warm runs.

From a host backend's ``POST /v1/sessions`` until the gateway answers ready
(long-poll), for a new user (cold: the server must start) and for a user whose
server runs (warm), beside the 2019 blog's direct sequence of hub calls made
by this script in the same run: create the user, start the server (following
the hub's progress stream), create the work folder, create the notebook. The
baseline uses nbembed's service token for every call; the blog minted a user
token too, which the service is deliberately not allowed to do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.hops import LogMark, laps, print_shares
from tests.bench.report import print_ratio, print_table
from tests.stack.helpers import start_server_and_wait, wait_for_final_status


class Bench:
    def __init__(self, settings: StackSettings) -> None:
        token = settings.service_token_file.read_text().strip()
        key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
        self.hub_url = settings.public_hub_url
        self.hub = httpx.AsyncClient(
            base_url=f"{self.hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=120,
        )
        self.contents = httpx.AsyncClient(
            base_url=self.hub_url, headers={"Authorization": f"token {token}"}, timeout=120
        )
        self.logs_dir = settings.logs_dir
        self.last_session = ""
        self.gateway = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )

    async def direct(self, name: str) -> None:
        """The blog's sequence, with today's API answers handled."""
        created = await self.hub.post(f"/users/{name}")
        assert created.status_code in (201, 409)
        user = (await self.hub.get(f"/users/{name}")).json()
        if not user["servers"].get("", {}).get("ready"):
            await start_server_and_wait(self.hub, name)
        base = f"/user/{name}/api/contents"
        folder = await self.contents.put(f"{base}/work", json={"type": "directory"})
        assert folder.status_code in (200, 201)
        notebook = await self.contents.post(f"{base}/work", json={"type": "notebook"})
        assert notebook.status_code == 201, notebook.text

    async def nbembed(self, user_id: str) -> None:
        created = await self.gateway.post(
            "/v1/sessions", json={"user_id": user_id, "notebook_name": "bench"}
        )
        assert created.status_code == 202
        final = await wait_for_final_status(self.gateway, created.json()["id"])
        assert final["status"] == "ready", final
        self.last_session = final["id"]

    async def stop(self, name: str) -> None:
        await self.hub.delete(f"/users/{name}/server")


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def main(runs: int, warm_runs: int, pause: float) -> None:
    settings = StackSettings()
    bench = Bench(settings)
    run = uuid.uuid4().hex[:8]
    results: dict[str, list[float]] = {
        k: [] for k in ("direct cold", "nbembed cold", "direct warm", "nbembed warm")
    }
    # Warm: one user each, server started once beforehand; each run opens a new notebook.
    warm_direct, warm_user = f"bench-direct-{run}", f"bench-warm-{run}"
    await bench.direct(warm_direct)
    await bench.nbembed(warm_user)
    marks = {service: LogMark(bench.logs_dir, service) for service in ("provisioner", "sync")}
    warm_sessions: set[str] = set()
    for i in range(max(runs, warm_runs)):
        # Alternate who goes first so neither always meets a busier machine.
        pairs = [("direct", f"bench-d{i}-{run}"), ("nbembed", f"bench-n{i}-{run}")]
        for kind, user in (pairs if i % 2 == 0 else pairs[::-1]) if i < runs else []:
            if kind == "direct":
                results["direct cold"].append(await timed(lambda u=user: bench.direct(u)))
                await bench.stop(user)
            else:
                results["nbembed cold"].append(await timed(lambda u=user: bench.nbembed(u)))
                await bench.stop(hub_username("demo", user))
        # Users do not open notebooks back to back: without a pause, the kernel sync
        # prestarted for the last session (about a second of CPU) is still starting.
        await asyncio.sleep(pause)
        results["direct warm"].append(await timed(lambda: bench.direct(warm_direct)))
        results["nbembed warm"].append(await timed(lambda: bench.nbembed(warm_user)))
        warm_sessions.add(bench.last_session)
    await bench.stop(warm_direct)
    await bench.stop(hub_username("demo", warm_user))

    print(f"time to notebook, {runs} cold and {max(runs, warm_runs)} warm runs each (seconds)")
    print_table(results, 0.9)
    for mode in ("cold", "warm"):
        print_ratio(mode, results[f"nbembed {mode}"], results[f"direct {mode}"], 0.9)
    print_table({k: v for k, v in results.items() if k.endswith("warm")}, 0.99)
    await asyncio.sleep(0.5)  # the log lines follow the events
    hops: dict[str, list[float]] = {}
    for service, message in (("provisioner", "server ready"), ("sync", "session ready")):
        records = marks[service].records(message, "session_id", warm_sessions)
        hops |= {f"{service}: {name}": values for name, values in laps(records).items()}
    known = sum(statistics.mean(values) for values in hops.values())
    hops["rest: gateway POST, projection, long-poll"] = [
        max(0.0, statistics.mean(results["nbembed warm"]) - known)
    ]
    print_shares("nbembed warm", hops, results["nbembed warm"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warm-runs", type=int, default=0, help="more warm runs than --runs")
    parser.add_argument(
        "--pause", type=float, default=2.0, help="seconds between warm runs (default 2)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.warm_runs, args.pause))
