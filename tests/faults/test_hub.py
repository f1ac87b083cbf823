"""The hub stopped, frozen, or one user's server hung: sessions end or fail clearly, in time.

What a host relies on: every session it asked for reaches ``ready`` or
``failed`` (with a code and a reason it can show) within the session's
deadline, and one user's stuck server never holds up other users' sessions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import murmur2

from infra.settings import StackSettings
from schemas import hub_username
from tests.faults.helpers import paused, paused_process, singleuser_pid, stopped
from tests.stack.helpers import open_session, wait_for_final_status

FINAL_WITHIN = 150
"""The provisioner's spawn deadline (120 s) plus room: no session may wait longer."""


async def request(gateway: httpx.AsyncClient, user_id: str) -> str:
    created = await gateway.post("/v1/sessions", json={"user_id": user_id, "notebook_name": "h"})
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


def assert_final_with_reason(sessions: list[dict[str, Any]]) -> None:
    for session in sessions:
        assert session["status"] in ("ready", "failed"), session
        if session["status"] == "failed":
            assert session["failure"]["code"] and session["failure"]["reason"], session


async def end_all(gateway: httpx.AsyncClient, session_ids: list[str]) -> None:
    await asyncio.gather(*(gateway.delete(f"/v1/sessions/{s}") for s in session_ids))


@pytest.mark.timeout(240)
async def test_sessions_requested_while_the_hub_is_stopped_complete_once_it_is_back(
    gateway: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    if not stack_settings.local_hub:
        pytest.skip("needs the local hub, which this test stops and starts")
    run = uuid.uuid4().hex[:6]
    ids: list[str] = []
    try:
        async with stopped(stack_settings, "jupyterhub"):
            ids = [await request(gateway, f"fault-hubdown-{run}-{i}") for i in range(4)]
            await asyncio.sleep(10)
            restarted = time.monotonic()
        sessions = await asyncio.gather(
            *(wait_for_final_status(gateway, s, timeout=FINAL_WITHIN) for s in ids)
        )
        print(
            f"[faults] hub stopped 10 s: {sum(s['status'] == 'ready' for s in sessions)}/4 "
            f"ready {time.monotonic() - restarted:.1f} s after it answered again"
        )
        assert [s["status"] for s in sessions] == ["ready"] * 4, [s["failure"] for s in sessions]
    finally:
        await end_all(gateway, ids)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("frozen_seconds", [8, 45])
async def test_sessions_requested_while_the_hub_is_frozen_end_ready_or_failed_in_time(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, frozen_seconds: int
) -> None:
    """SIGSTOP: the hub's port accepts connections and nothing answers (a hung hub).

    Short of the provisioner's timeouts the sessions complete; beyond them
    they fail with a reason, each within the deadline, and new sessions work
    as soon as the hub answers again.
    """
    if not stack_settings.local_hub:
        pytest.skip("needs the local hub, which this test freezes")
    run = uuid.uuid4().hex[:6]
    warm = await open_session(gateway, user_id=f"fault-hubslow-{run}-warm")
    assert warm["status"] == "ready"
    ids = [warm["id"]]
    try:
        async with paused(stack_settings, "jupyterhub"):
            requested = time.monotonic()
            ids += [await request(gateway, f"fault-hubslow-{run}-{i}") for i in range(4)]
            ids += [await request(gateway, f"fault-hubslow-{run}-warm") for _ in range(2)]
            await asyncio.sleep(frozen_seconds)
            thawed = time.monotonic()
        sessions = await asyncio.gather(
            *(wait_for_final_status(gateway, s, timeout=FINAL_WITHIN) for s in ids[1:])
        )
        final = time.monotonic()
        outcome = {s["status"]: sum(x["status"] == s["status"] for x in sessions) for s in sessions}
        print(
            f"[faults] hub frozen {frozen_seconds} s: {outcome}, all final "
            f"{final - thawed:.1f} s after it answered again ({final - requested:.1f} s in all); "
            f"failures: {sorted({s['failure']['code'] for s in sessions if s['failure']})}"
        )
        assert_final_with_reason(sessions)
        if frozen_seconds < 20:  # well inside every timeout: nothing may fail
            assert all(s["status"] == "ready" for s in sessions), sessions
        again = await open_session(gateway, user_id=f"fault-hubslow-{run}-after")
        ids.append(again["id"])
        assert again["status"] == "ready", again
    finally:
        await end_all(gateway, ids)


def same_partition_user(hub_user: str, run: str, partitions: int) -> str:
    """A host user id whose hub user's events land on ``hub_user``'s partition."""
    wanted = (murmur2(hub_user.encode()) & 0x7FFFFFFF) % partitions
    for i in range(10_000):
        candidate = f"fault-neighbour-{run}-{i}"
        key = hub_username("demo", candidate).encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == wanted:
            return candidate
    raise AssertionError("no user id found on that partition")


@pytest.mark.timeout(240)
async def test_a_hung_server_fails_its_session_and_never_holds_up_its_partition(
    gateway: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    """One user's server hangs (SIGSTOP); another user whose events share its partition opens.

    The neighbour's session is ready long before the hung server's session
    gives up, and the hung one fails with a reason instead of being retried
    into a dead letter.
    """
    run = uuid.uuid4().hex[:6]
    stuck_user = f"fault-hung-{run}"
    stuck_hub_user = hub_username("demo", stuck_user)
    neighbour = same_partition_user(stuck_hub_user, run, stack_settings.kafka_partitions)
    first = await asyncio.gather(
        open_session(gateway, user_id=stuck_user), open_session(gateway, user_id=neighbour)
    )
    assert [s["status"] for s in first] == ["ready", "ready"], first
    ids = [s["id"] for s in first]
    try:
        async with paused_process(singleuser_pid(stack_settings, stuck_hub_user), stack_settings):
            stuck_id = await request(gateway, stuck_user)
            await asyncio.sleep(1)  # sync is now waiting on the hung server
            neighbour_id = await request(gateway, neighbour)
            ids += [stuck_id, neighbour_id]
            started = time.monotonic()
            # A generous bound: far below what the hung server would cost it before.
            ready = await wait_for_final_status(gateway, neighbour_id, timeout=30)
            waited = time.monotonic() - started
            stuck = await wait_for_final_status(gateway, stuck_id, timeout=90)
            gave_up = time.monotonic() - started
        print(
            f"[faults] one server hung: the neighbour on its partition ready in {waited:.1f} s; "
            f"the hung server's session {stuck['status']} after {gave_up:.1f} s"
        )
        assert ready["status"] == "ready", ready
        assert stuck["status"] == "failed", stuck
        assert stuck["failure"]["code"] == "server_unavailable", stuck
        assert stuck["failure"]["reason"], stuck
    finally:
        await end_all(gateway, ids)
