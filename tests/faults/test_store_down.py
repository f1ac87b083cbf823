"""The store stopped or hung: /readyz red on all three services, nothing acknowledged lost.

Four users with running servers open new notebooks and save in a loop while
FerretDB (the store's MongoDB endpoint) is stopped for 10 s and started
again, or frozen (SIGSTOP: it accepts connections and answers nothing) for
25 s and continued. Requests during the outage get 503 (with Retry-After) or,
for those already past the store, their 202; every 202 must end ready or
stored. A hung store must not be blamed on the users' servers: sync's 20 s
placement bound would fail a session with ``server_unavailable`` if a store
call could outlast it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from infra.settings import StackSettings
from tests.faults.helpers import paused
from tests.faults.outbox_helpers import (
    Load,
    assert_problem_with_retry_after,
    drive,
    forget_users,
    outcomes,
    stopped,
    wait_ready,
    warm_users,
)

# Frozen for longer than sync's placement bound (20 s), which a store call must
# never outlast: it would fail the session as the user's server's fault.
OUTAGE_SECONDS = {"stopped": 10, "frozen": 25}
RECOVERY_BOUND = 120


async def _ready(url: str) -> int:
    async with httpx.AsyncClient(timeout=15) as client:
        return (await client.get(url)).status_code


async def _describe(gateway: httpx.AsyncClient, load: Load, ids: list[str]) -> list[object]:
    """What the gateway says of each lost session or save: its status and reason."""
    found = []
    for key in ids:
        kind = "sessions" if key in load.accepted_sessions else "saves"
        found.append((await gateway.get(f"/v1/{kind}/{key}")).json())
    return found


@contextlib.asynccontextmanager
async def _outage(settings: StackSettings, kind: str) -> AsyncIterator[None]:
    if kind == "stopped":
        async with stopped(settings, "ferretdb"):
            yield
    else:
        async with paused(settings, "ferretdb"):
            yield


@pytest.mark.timeout(400)
@pytest.mark.parametrize("kind", ["stopped", "frozen"])
async def test_store_out_turns_readiness_red_and_loses_nothing_acknowledged(
    running_stack: StackSettings, gateway: httpx.AsyncClient, hub: httpx.AsyncClient, kind: str
) -> None:
    settings = running_stack
    probes = {
        "gateway": f"http://127.0.0.1:{settings.gateway_port}/readyz",
        "provisioner": f"http://127.0.0.1:{settings.provisioner_health_port}/readyz",
        "sync": f"http://127.0.0.1:{settings.sync_health_port}/readyz",
    }
    warm = await warm_users(gateway, 4)
    load = Load()
    done = asyncio.Event()
    try:
        assert {await _ready(url) for url in probes.values()} <= {200, 204}
        driving = asyncio.ensure_future(drive(gateway, warm, load, done))
        await asyncio.sleep(3)
        async with _outage(settings, kind):
            await asyncio.sleep(2)
            while_down = {name: await _ready(url) for name, url in probes.items()}
            await asyncio.sleep(OUTAGE_SECONDS[kind] - 2)
        restarted = time.monotonic()
        await wait_ready(settings)
        await asyncio.sleep(3)
        done.set()
        await driving

        found = await outcomes(gateway, load, RECOVERY_BOUND)
        recovered = time.monotonic() - restarted
        lost = [k for k, status in found.items() if status not in ("ready", "stored")]
        print(
            f"\nstore {kind} {OUTAGE_SECONDS[kind]}s: readyz while down {while_down}; "
            f"{len(load.accepted_sessions)} sessions and {len(load.accepted_saves)} saves "
            f"accepted, {len(load.refused)} refused (503), lost {len(lost)} "
            f"({[found[k] for k in lost]}), all final {recovered:.1f}s after the store was back"
        )
        assert all(status >= 500 for status in while_down.values()), while_down
        for answer in load.refused:
            assert_problem_with_retry_after(answer)
        assert not load.other and not load.errors, (load.other, load.errors)
        assert not lost, await _describe(gateway, load, lost)
    finally:
        done.set()
        await forget_users(hub, warm)
