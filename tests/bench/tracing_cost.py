"""What recording a trace costs: ``python -m tests.bench.tracing_cost [--runs N]``.

Warm sessions (the user's server runs) on the running stack, alternating
untraced ones (no ``traceparent``: the stack records nothing for them) and
traced ones (a sampled ``traceparent``: every span of the session is recorded
in every service and written to ``.run/traces``), so both meet the same
machine. The ratio is the cost of recording one trace end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.report import percentile, print_table
from tests.stack.helpers import wait_for_final_status
from tests.stack.tracing_helpers import HostTrace


async def session(gateway: httpx.AsyncClient, user_id: str, headers: dict[str, str]) -> float:
    """Seconds from POST /v1/sessions until the gateway answers ready (long-poll)."""
    started = time.perf_counter()
    created = await gateway.post(
        "/v1/sessions", json={"user_id": user_id, "notebook_name": "bench"}, headers=headers
    )
    assert created.status_code == 202, created.text
    final = await wait_for_final_status(gateway, created.json()["id"])
    assert final["status"] == "ready", final
    return time.perf_counter() - started


async def main(runs: int) -> None:
    settings = StackSettings()
    key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
    token = settings.service_token_file.read_text().strip()
    user_id = f"bench-tracing-{uuid.uuid4().hex[:8]}"
    results: dict[str, list[float]] = {"untraced warm": [], "traced warm": []}
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        ) as gateway,
        httpx.AsyncClient(
            base_url=f"{settings.public_hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=120,
        ) as hub,
    ):
        await session(gateway, user_id, {})  # starts the server
        for i in range(runs):
            order = [("untraced warm", {}), ("traced warm", HostTrace().headers)]
            for name, headers in order if i % 2 == 0 else order[::-1]:
                results[name].append(await session(gateway, user_id, headers))
        await hub.delete(f"/users/{hub_username(settings.tenants[0], user_id)}/server")
    print(f"tracing cost, {runs} warm sessions each (seconds)")
    print_table(results, 0.9)
    for q in (0.5, 0.9):
        ratio = percentile(results["traced warm"], q) / percentile(results["untraced warm"], q)
        print(f"ratio traced/untraced, p{round(q * 100)}: {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
