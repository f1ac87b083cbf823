"""SIGKILL the provisioner while 20 new users wait for their servers: all 20 get one."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from infra.settings import StackSettings
from tests.faults.helpers import sigkill
from tests.stack.helpers import wait_for_final_status

USERS = 20


@pytest.mark.timeout(300)
async def test_sigkill_provisioner_mid_20_new_users_all_become_ready(
    gateway: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    run = uuid.uuid4().hex[:6]
    session_ids: list[str] = []
    try:
        started = time.monotonic()
        for i in range(USERS):
            created = await gateway.post(
                "/v1/sessions", json={"user_id": f"fault-prov-{run}-{i}", "notebook_name": "p"}
            )
            assert created.status_code == 202, created.text
            session_ids.append(created.json()["id"])
        waiting = [
            asyncio.ensure_future(wait_for_final_status(gateway, s, timeout=240))
            for s in session_ids
        ]
        # Kill once the first servers are ready: others are mid-spawn, others queued.
        async with asyncio.timeout(120):
            while sum(w.done() for w in waiting) < 3:  # noqa: ASYNC110 - counting finished polls
                await asyncio.sleep(0.1)
        ready_before = sum(w.done() for w in waiting)
        killed_at = time.monotonic()
        back_after = await sigkill(stack_settings, "provisioner")
        sessions = await asyncio.gather(*waiting)
        done = time.monotonic()
        print(
            f"[faults] provisioner SIGKILLed with {ready_before}/{USERS} sessions ready: "
            f"ready again after {back_after:.1f} s, the rest ready "
            f"{done - killed_at:.1f} s after the kill ({done - started:.1f} s in all)"
        )
        failed = [s for s in sessions if s["status"] != "ready"]
        print(f"[faults] provisioner SIGKILL: lost {len(failed)} of {USERS} sessions")
        assert not failed, [s.get("failure") for s in failed]
    finally:
        await asyncio.gather(*(gateway.delete(f"/v1/sessions/{s}") for s in session_ids))
