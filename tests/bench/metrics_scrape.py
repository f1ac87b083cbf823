"""What a scrape costs: ``python -m tests.bench.metrics_scrape [--runs N]`` (stack up).

Each replica's ``/metrics`` beside its ``/healthz`` on the same port, in the
same run (the baseline: a request that does nothing), and the size of each
answer. Prometheus asks every 15 s or so; this shows that answering costs a
few milliseconds of a replica's time.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from infra import stack
from infra.settings import StackSettings
from tests.bench.report import print_ratio, print_table
from tests.stack.metrics_helpers import endpoints


async def _timed(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    response = await http.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 204), (url, response.status_code)
    return elapsed, len(response.content)


async def main(runs: int) -> None:
    settings = stack.adopt_running_replicas(StackSettings())
    metrics: dict[str, list[float]] = {}
    health: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for service, url, headers in endpoints(settings):
            name = f"{service} {url.rsplit(':', 1)[1].split('/')[0]}"
            metrics[name], health[name] = [], []
            for _ in range(runs):
                seconds, sizes[name] = await _timed(http, url, headers)
                metrics[name].append(seconds)
                health[name].append(
                    (await _timed(http, url[: -len("/metrics")] + "/healthz", {}))[0]
                )
    print_table({f"/metrics {n}": v for n, v in metrics.items()}, 0.95)
    print_table({f"/healthz {n}": v for n, v in health.items()}, 0.95)
    for name, size in sizes.items():
        print(f"{name}: {size} bytes")
    print_ratio(
        "/metrics over /healthz, all replicas",
        [s for v in metrics.values() for s in v],
        [s for v in health.values() for s in v],
        0.95,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
