"""Replicas of every service (``NBEMBED_STACK_REPLICAS``): each answers, none misses a change.

The suite's stack runs 2 of each (tests/conftest.py); with 1 these tests skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra import stack, supervisor
from infra.settings import StackSettings
from schemas import SessionReady, hub_username
from tests.faults.helpers import program_pid
from tests.security.kernel import user_server_token
from tests.stack.helpers import eventually, open_session, wait_for_final_status


@pytest.fixture
def replicas(stack_settings: StackSettings) -> int:
    if stack_settings.replicas < 2:
        pytest.skip("needs NBEMBED_STACK_REPLICAS >= 2")
    return stack_settings.replicas


@pytest.fixture
async def gateway_replicas(
    stack_settings: StackSettings, api_key: str, replicas: int, running_stack: StackSettings
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per gateway replica, on the replica's own port (the shared one picks one)."""
    index = stack.SERVICES.index("gateway")
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{stack_settings.replica_port(index, replica)}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        for replica in range(1, replicas + 1)
    ]
    yield clients
    await asyncio.gather(*(client.aclose() for client in clients))


def test_every_replica_of_every_service_runs_and_is_checked(
    running_stack: StackSettings, replicas: int
) -> None:
    answers = stack.status(running_stack)
    for service in stack.SERVICES:
        names = stack.service_programs(running_stack, service)
        assert len(names) == replicas
        assert all(answers[name] for name in names), answers
    names = stack.all_service_programs(running_stack)
    pids = {supervisor.ctl(running_stack, "pid", name).strip() for name in names}
    assert len(pids) == len(names) == 3 * replicas  # each replica its own process


class PausedSync:
    """Every sync replica frozen (SIGSTOP), so a status stays put until `resume`.

    Frozen, not stopped: continued, each replica goes on in its consumer group
    at once, so the change follows `resume` within a second, and a waiter not
    woken by it (30 s long-poll, 15 s stream re-read) is told apart surely even
    on a loaded machine (a restart and a rebalance took over 12 s in CI).
    """

    def __init__(self, settings: StackSettings) -> None:
        self.pids = [
            program_pid(settings, name) for name in stack.service_programs(settings, "sync")
        ]
        self.frozen = False

    async def __aenter__(self) -> PausedSync:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        self.frozen = True
        return self

    async def resume(self) -> None:
        if self.frozen:
            for pid in self.pids:
                os.kill(pid, signal.SIGCONT)
            self.frozen = False

    async def __aexit__(self, *exc: object) -> None:
        await self.resume()  # already continued: nothing to do


UNWOKEN_SECONDS = 12
"""Unwoken, a long-poll (wait=30) answers after 30 s and an event stream re-reads after 15 s;
woken, both answer as soon as sync is continued and places the notebook (well under 1 s)."""


async def test_a_status_change_wakes_long_polls_and_streams_on_every_gateway_replica(
    gateway_replicas: list[httpx.AsyncClient], hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user_id = f"wake-{uuid.uuid4().hex[:8]}"
    first = gateway_replicas[0]
    warm = await open_session(first, user_id=user_id)  # the user's server runs from now on
    assert warm["status"] == "ready", warm
    try:
        async with PausedSync(stack_settings) as sync:
            created = await first.post("/v1/sessions", json={"user_id": user_id})
            assert created.status_code == 202, created.text
            session_id = created.json()["id"]

            async def provisioning() -> bool:
                got = await first.get(f"/v1/sessions/{session_id}")
                return bool(got.json()["status"] == "provisioning")

            await eventually(provisioning)  # server ready, notebook not placed: sync is down

            async def long_poll(client: httpx.AsyncClient) -> str:
                got = await client.get(
                    f"/v1/sessions/{session_id}", params={"wait": 30, "status": "provisioning"}
                )
                return str(got.json()["status"])

            async def stream(client: httpx.AsyncClient) -> list[str]:
                seen: list[str] = []
                async with client.stream("GET", f"/v1/sessions/{session_id}/events") as events:
                    async for line in events.aiter_lines():
                        if line.startswith("data:"):
                            seen.append(json.loads(line[5:])["status"])
                return seen

            polls = [asyncio.create_task(long_poll(c)) for c in gateway_replicas]
            streams = [asyncio.create_task(stream(c)) for c in gateway_replicas]
            await asyncio.sleep(1)
            assert not any(task.done() for task in polls + streams)  # all waiting
            await sync.resume()
            async with asyncio.timeout(UNWOKEN_SECONDS):
                answers = await asyncio.gather(*polls)
                seen = await asyncio.gather(*streams)
        assert answers == ["ready"] * len(gateway_replicas), answers
        assert all(s == ["provisioning", "ready"] for s in seen), seen
    finally:
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")


async def test_a_save_long_poll_wakes_on_every_gateway_replica(
    gateway_replicas: list[httpx.AsyncClient], hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user_id = f"wake-save-{uuid.uuid4().hex[:8]}"
    session = await open_session(gateway_replicas[0], user_id=user_id, notebook_name="w")
    assert session["status"] == "ready", session
    try:
        async with PausedSync(stack_settings) as sync:
            created = await gateway_replicas[0].post(f"/v1/sessions/{session['id']}/saves")
            assert created.status_code == 202, created.text
            save_id = created.json()["id"]
            polls = [
                asyncio.create_task(client.get(f"/v1/saves/{save_id}", params={"wait": 30}))
                for client in gateway_replicas
            ]
            await asyncio.sleep(1)
            assert not any(task.done() for task in polls)  # pending while sync is down
            await sync.resume()
            async with asyncio.timeout(UNWOKEN_SECONDS):
                outcomes = await asyncio.gather(*polls)
        assert [o.json()["status"] for o in outcomes] == ["stored"] * len(gateway_replicas)
    finally:
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")


async def test_a_restore_wakes_the_session_long_poll_on_every_gateway_replica(
    gateway_replicas: list[httpx.AsyncClient], hub: httpx.AsyncClient
) -> None:
    """How an open page's SDK learns that a restore rewrote its file, whichever replica
    its long-poll reached: the answer comes at the restore, not at the wait's end."""
    user_id = f"wake-restore-{uuid.uuid4().hex[:8]}"
    first = gateway_replicas[0]
    session = await open_session(first, user_id=user_id, notebook_name="r")
    assert session["status"] == "ready" and session["restore_id"] == "", session
    try:
        wait = {"wait": 30, "status": "ready", "restore_id": ""}
        polls = [
            asyncio.create_task(client.get(f"/v1/sessions/{session['id']}", params=wait))
            for client in gateway_replicas
        ]
        await asyncio.sleep(1)
        assert not any(task.done() for task in polls)  # nothing new yet: all waiting
        # Revision 1 is the placed notebook: restoring it rewrites the file all the same.
        restored = await first.post(f"/v1/notebooks/{session['notebook_id']}/revisions/1/restore")
        assert restored.status_code == 200 and restored.json()["sessions_updated"] == 1
        async with asyncio.timeout(UNWOKEN_SECONDS):
            answers = [(await poll).json() for poll in polls]
        assert [a["status"] for a in answers] == ["ready"] * len(polls)
        ids = {a["restore_id"] for a in answers}  # one restore, seen alike on every replica
        assert len(ids) == 1 and "" not in ids, answers
        assert {a["restored_revision"] for a in answers} == {restored.json()["revision"]}
    finally:
        await hub.delete(f"/users/{hub_username('demo', user_id)}/server")


async def test_one_jupyter_save_reported_by_its_server_and_its_page_at_once_is_stored(
    gateway_replicas: list[httpx.AsyncClient], hub: httpx.AsyncClient
) -> None:
    """The server's save hook and the SDK report every Jupyter save, with the same
    timestamp, at the same moment, usually to different replicas: one save record, and
    it is stored. (A lost race on the outbox marker left such saves pending for ever.)"""
    user_id = f"race-{uuid.uuid4().hex[:8]}"
    page, server = gateway_replicas[0], gateway_replicas[-1]
    session = await open_session(page, user_id=user_id, notebook_name="race")
    assert session["status"] == "ready", session
    hub_user = hub_username("demo", user_id)
    as_server = {"Authorization": f"token {await user_server_token(hub, hub_user)}"}
    try:
        for i in range(RACED_SAVES):
            stamp = (datetime.now(UTC) + timedelta(microseconds=i)).isoformat()
            reported, requested = await asyncio.gather(
                server.post(
                    "/internal/server-saves",
                    json={"path": session["path"], "last_modified": stamp},
                    headers=as_server,
                ),
                page.post(f"/v1/sessions/{session['id']}/saves", json={"last_modified": stamp}),
            )
            assert (reported.status_code, requested.status_code) == (202, 202), requested.text
            outcome = await _outcome(page, requested.json()["id"])
            assert outcome["status"] == "stored", (i, outcome)
    finally:
        await hub.delete(f"/users/{hub_user}/server")


RACED_SAVES = 20


async def _outcome(gateway: httpx.AsyncClient, save_id: str, within: float = 60) -> dict[str, Any]:
    """The save once it is no longer pending (a long-poll may also answer early, when
    another replica's "it exists" wake-up arrives: ask again, as the SDK does)."""
    async with asyncio.timeout(within):
        while True:
            outcome: dict[str, Any] = (
                await gateway.get(f"/v1/saves/{save_id}", params={"wait": 30})
            ).json()
            if outcome["status"] != "pending":
                return outcome


# -- a rebalance in the middle of a stream -------------------------------------------------


class Writer:
    """One host user: opens a notebook, then changes and saves it ``saves`` times."""

    def __init__(self, gateway: httpx.AsyncClient, contents: httpx.AsyncClient, name: str) -> None:
        self.gateway, self.contents, self.name = gateway, contents, name
        self.session: dict[str, Any] = {}
        self.revisions: list[int] = []

    async def run(self, hub_url: str, saves: int) -> None:
        self.session = await open_session(self.gateway, user_id=self.name, notebook_name="r")
        assert self.session["status"] == "ready", self.session
        url = f"{hub_url}/user/{hub_username('demo', self.name)}/api/contents/"
        url += self.session["path"]
        for i in range(saves):
            source = f"x = {i}  # {uuid.uuid4().hex}"
            put = await self.contents.put(
                url, json={"type": "notebook", "format": "json"} | {"content": _notebook(source)}
            )
            assert put.status_code == 200, put.text
            created = await self.gateway.post(f"/v1/sessions/{self.session['id']}/saves")
            assert created.status_code == 202, created.text
            # Replicas leave and join meanwhile: a save may wait for a rebalance.
            outcome = await _outcome(self.gateway, created.json()["id"], within=120)
            assert outcome["status"] == "stored", outcome
            self.revisions.append(outcome["revision"])


def _notebook(source: str) -> dict[str, Any]:
    cell = {
        "id": "c",
        "cell_type": "code",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": source,
    }
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}


async def _churn(settings: StackSettings) -> None:
    """Replicas leave and join while sessions and saves flow: each move is a rebalance."""
    await asyncio.sleep(2)
    # sync: a clean stop (it leaves its groups), then back.
    await asyncio.to_thread(supervisor.ctl, settings, "stop", "sync-2")
    await asyncio.sleep(3)
    await asyncio.to_thread(supervisor.ctl, settings, "start", "sync-2")
    # the provisioner: killed mid-stream; supervisord starts it again.
    pid = int(supervisor.ctl(settings, "pid", "provisioner-2").strip())
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(3)
    # and sync again, killed this time.
    os.kill(int(supervisor.ctl(settings, "pid", "sync").strip()), signal.SIGKILL)


class Placements:
    """Every session.ready published between ``start`` and ``read``: where each session went."""

    def __init__(self, kafka_options: dict[str, Any], partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(**kafka_options)
        self._partitions = partitions
        self._from: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self._consumer.start()
        assigned = [TopicPartition(SessionReady.topic, p) for p in range(self._partitions)]
        self._consumer.assign(assigned)
        self._from = await self._consumer.end_offsets(assigned)

    async def read(self) -> dict[str, set[tuple[str, str]]]:
        """Session id → the (notebook id, path) pairs its session.ready events named."""
        end = await self._consumer.end_offsets(list(self._from))
        placed: dict[str, set[tuple[str, str]]] = {}
        for partition, offset in self._from.items():
            self._consumer.seek(partition, offset)
            while offset < end[partition]:
                batch = (await self._consumer.getmany(partition, timeout_ms=1000)).get(partition)
                for record in batch or []:
                    offset = record.offset + 1
                    headers = {k: v.decode() for k, v in record.headers}
                    if headers.get("ce_type") == SessionReady.event_type:
                        data = json.loads(record.value)
                        placed.setdefault(data["session_id"], set()).add(
                            (data["notebook_id"], data["path"])
                        )
        return placed

    async def stop(self) -> None:
        await self._consumer.stop()


async def test_replicas_leaving_and_joining_mid_stream_lose_and_duplicate_nothing(
    running_stack: StackSettings,
    replicas: int,
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    hub_token: str,
    kafka_options: dict[str, Any],
) -> None:
    contents = httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}, timeout=60)
    run = uuid.uuid4().hex[:6]
    writers = [Writer(gateway, contents, f"churn-{run}-{i}") for i in range(6)]
    saves = 5
    placements = Placements(kafka_options, running_stack.kafka_partitions)
    await placements.start()
    try:
        async with asyncio.timeout(240):
            await asyncio.gather(
                _churn(running_stack),
                *(w.run(running_stack.public_hub_url, saves) for w in writers),
            )
        # Placed once: a redelivered server.ready may announce a session again, but always
        # the same notebook at the same path (sync's placement record).
        async with asyncio.timeout(60):
            placed = await placements.read()
        for writer in writers:
            session = writer.session
            assert placed[session["id"]] == {(session["notebook_id"], session["path"])}
        for writer in writers:
            # One revision per distinct save: none lost, none stored twice.
            assert len(set(writer.revisions)) == saves, writer.revisions
            listed = await gateway.get(f"/v1/notebooks/{writer.session['notebook_id']}/revisions")
            assert listed.status_code == 200, listed.text
            numbers = [r["revision"] for r in listed.json()["revisions"]]
            assert sorted(set(writer.revisions)) == sorted(set(numbers) & set(writer.revisions))
            assert len(numbers) == len(set(numbers))
            shas = [r["sha256"] for r in listed.json()["revisions"]]
            assert len(shas) == len(set(shas)), "the same content stored twice"
            # Ready once: the session's status never moved past ready, nor back.
            again = await wait_for_final_status(gateway, writer.session["id"])
            assert again["status"] == "ready"
    finally:
        await placements.stop()
        await contents.aclose()
        await asyncio.gather(
            *(hub.delete(f"/users/{hub_username('demo', w.name)}/server") for w in writers)
        )
        await _all_replicas_back(running_stack)


async def _all_replicas_back(settings: StackSettings) -> None:
    supervisor.start_programs(settings, tuple(stack.all_service_programs(settings)))

    async def all_ready() -> bool:
        return all((await stack.check_all(settings)).values())

    await eventually(all_ready, timeout=60, interval=0.5)
