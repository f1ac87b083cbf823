"""Stack start time and idle memory: ``python -m tests.bench.stack_footprint [--runs N]``.

Starts and stops the whole local stack N times (warm: installed, storage
formatted) and prints the median time until every component answers, beside
the baseline of the same runs: the slowest single component's own time to
answer (the critical path), so the ratio shows what the orchestration adds.
Then, with the stack idle, prints each component's resident memory (its whole
process tree), and that of one single-user server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
import psutil

from infra import stack, supervisor
from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import SERVER_MODULE, start_server_and_wait


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def program_pids(settings: StackSettings) -> dict[str, int]:
    pids = {}
    for line in supervisor.ctl(settings, "status").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "RUNNING":
            pids[parts[0]] = int(parts[3].rstrip(","))
    return pids


async def single_user_server_rss(settings: StackSettings) -> float:
    token = settings.service_token_file.read_text().strip()
    name = hub_username("demo", f"bench-{uuid.uuid4().hex}")
    async with httpx.AsyncClient(
        base_url=f"{settings.public_hub_url}/hub/api",
        headers={"Authorization": f"token {token}"},
        timeout=120,
    ) as hub:
        await hub.post(f"/users/{name}")
        await start_server_and_wait(hub, name)
        await asyncio.sleep(5)  # let it settle to idle
        rss = 0.0
        for proc in psutil.process_iter(["cmdline", "environ"]):
            env = proc.info["environ"] or {}
            if env.get("JUPYTERHUB_USER") == name and SERVER_MODULE in " ".join(
                proc.info["cmdline"] or []
            ):
                rss = tree_rss_mib(proc.pid)
        await hub.delete(f"/users/{name}/server")
        await hub.delete(f"/users/{name}")
        return rss


def main() -> None:
    """Print start-time and memory figures for the README."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = StackSettings()
    if supervisor.pid(settings) is not None:
        raise SystemExit("stop the stack first (make down): this benchmark starts it itself")

    totals, critical = [], []
    for run in range(args.runs):
        started = time.perf_counter()
        timings = stack.up(settings)
        totals.append(time.perf_counter() - started)
        infra = max(timings[name] for name in ("kafka", "mongodb", "jupyterhub"))
        services = max(timings[name] for name in stack.SERVICES)
        critical.append(infra + services)
        print(
            f"run {run + 1}: up in {totals[-1]:.1f}s "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        )
        if run < args.runs - 1:
            assert not stack.down(settings)

    time.sleep(10)  # idle
    print("\nresident memory at idle (process tree, MiB):")
    for name, pid in program_pids(settings).items():
        print(f"  {name:<12} {tree_rss_mib(pid):7.0f}")
    print(f"  {'1 notebook server':<12} {asyncio.run(single_user_server_rss(settings)):7.0f}")
    assert not stack.down(settings)

    total, base = statistics.median(totals), statistics.median(critical)
    print(f"\nwarm start, median of {args.runs}: {total:.1f}s")
    print(f"baseline (slowest component + slowest service, same runs): {base:.1f}s")
    print(f"ratio: {total / base:.2f}x")


if __name__ == "__main__":
    main()
