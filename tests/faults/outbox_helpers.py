"""Helpers for the broker-down and store-down fault cases: stop a component, load, count.

Components are stopped and started through this worktree's own supervisord
(`infra.supervisor`), so only the stack these tests run against is touched;
a stack started elsewhere (another state folder) is left alone and the case
is skipped. A stopped component is always started again (`stopped`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from infra import stack, supervisor
from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import open_session

FINAL = {"ready", "failed", "ended", "stored"}


def require_own_stack(settings: StackSettings) -> None:
    """Skip unless this worktree's supervisord runs the stack (never stop another's)."""
    if supervisor.pid(settings) is None:
        pytest.skip("the stack under test is not this worktree's: its components are not ours")


@asynccontextmanager
async def stopped(settings: StackSettings, *programs: str) -> AsyncIterator[float]:
    """Stop ``programs`` for the block; start them again whatever happens.

    Yields the monotonic time they were stopped at.
    """
    require_own_stack(settings)
    await asyncio.to_thread(supervisor.ctl, settings, "stop", *programs)
    try:
        yield time.monotonic()
    finally:
        await asyncio.to_thread(supervisor.start_programs, settings, programs)


async def wait_ready(settings: StackSettings, timeout: float = 120) -> None:
    """Until every component of the stack answers again; fails naming those that do not."""
    deadline = time.monotonic() + timeout
    while True:
        answers = await stack.check_all(settings)
        silent = sorted(name for name, answered in answers.items() if not answered)
        if not silent:
            return
        assert time.monotonic() < deadline, f"not answering after {timeout:.0f}s: {silent}"
        await asyncio.sleep(0.5)


@dataclass
class Load:
    """What a load run asked, and what the gateway answered."""

    accepted_sessions: dict[str, str] = field(default_factory=dict)
    """Session id → host user id, for every 202."""
    accepted_saves: list[str] = field(default_factory=list)
    refused: list[httpx.Response] = field(default_factory=list)
    """503 answers."""
    other: list[httpx.Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def warm_users(gateway: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """``count`` users with a running server and a ready session each."""
    prefix = uuid.uuid4().hex[:8]
    sessions = await asyncio.gather(
        *(
            open_session(gateway, user_id=f"fault-{prefix}-{n}", notebook_name="warm")
            for n in range(count)
        )
    )
    assert all(s["status"] == "ready" for s in sessions), sessions
    return list(sessions)


async def drive(
    gateway: httpx.AsyncClient, warm: list[dict[str, Any]], load: Load, until: asyncio.Event
) -> None:
    """One worker per warm user: new sessions (with Idempotency-Keys) and saves, until ``until``."""

    async def worker(session: dict[str, Any]) -> None:
        while not until.is_set():
            await _one_session(gateway, session["user_id"], load)
            await _one_save(gateway, session["id"], load)
            await asyncio.sleep(1.0)  # gentle: 2 shared cores

    await asyncio.gather(*(worker(s) for s in warm))


async def _one_session(gateway: httpx.AsyncClient, user_id: str, load: Load) -> None:
    try:
        answer = await gateway.post(
            "/v1/sessions",
            json={"user_id": user_id, "notebook_name": "under fault"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    except httpx.HTTPError as exc:
        load.errors.append(repr(exc))
        return
    if answer.status_code == 202:
        load.accepted_sessions[answer.json()["id"]] = user_id
    else:
        (load.refused if answer.status_code == 503 else load.other).append(answer)


async def _one_save(gateway: httpx.AsyncClient, session_id: str, load: Load) -> None:
    try:
        answer = await gateway.post(f"/v1/sessions/{session_id}/saves")
    except httpx.HTTPError as exc:
        load.errors.append(repr(exc))
        return
    if answer.status_code == 202:
        load.accepted_saves.append(answer.json()["id"])
    else:
        (load.refused if answer.status_code == 503 else load.other).append(answer)


async def outcomes(gateway: httpx.AsyncClient, load: Load, timeout: float) -> dict[str, str]:
    """Each accepted session's and save's final status (or its last, at the timeout)."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout

    async def follow(path: str, key: str) -> None:
        status = ""
        while time.monotonic() < deadline:
            answer = await gateway.get(path, params={"wait": 10})
            status = answer.json().get("status", "") if answer.status_code == 200 else status
            if status in FINAL:
                break
            await asyncio.sleep(0.2)
        found[key] = status

    await asyncio.gather(
        *(follow(f"/v1/sessions/{s}", s) for s in load.accepted_sessions),
        *(follow(f"/v1/saves/{s}", s) for s in load.accepted_saves),
    )
    return found


async def notebooks_per_user(gateway: httpx.AsyncClient, user_id: str) -> int:
    """How many notebooks the user has in the library (one per new-notebook session)."""
    count, cursor = 0, None
    while True:
        params: dict[str, Any] = {"user_id": user_id, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await gateway.get("/v1/notebooks", params=params)).json()
        count += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return count


async def forget_users(hub: httpx.AsyncClient, warm: list[dict[str, Any]]) -> None:
    """Stop the warm users' servers."""
    for session in warm:
        await hub.delete(f"/users/{hub_username('demo', session['user_id'])}/server")


def assert_problem_with_retry_after(answer: httpx.Response) -> None:
    """A 503 the host can act on: problem+json with Retry-After."""
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    assert int(answer.headers["retry-after"]) > 0


async def count_deliveries(
    kafka_options: dict[str, Any], topics: list[str], until: asyncio.Event
) -> Counter[str]:
    """How often each event id was delivered on ``topics`` from now until ``until``."""
    seen: Counter[str] = Counter()
    consumer = AIOKafkaConsumer(*topics, **kafka_options, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        while not until.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except Exception:  # the broker is the fault under test: keep watching
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    if "ce_id" in headers:
                        seen[headers["ce_id"].decode()] += 1
    finally:
        await consumer.stop()
    return seen
