"""Sync killed in the middle of 500 saves (or restarted in the middle of 100): each stored once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra import store
from infra.settings import StackSettings
from schemas import hub_username
from services.sync.store import decode_content
from tests.faults.helpers import STOPS
from tests.stack.helpers import open_session

USERS = 20
SAVES_EACH = {"SIGKILL": 25, "SIGTERM": 5}
"""Saves per user: the kill is the case the README promises for 500 saves; a graceful
restart loses less by construction, and 100 saves show it (the suite's time matters)."""
KILL_AFTER = 0.3
"""The share of saves stored before sync is stopped: the stop lands mid-stream."""
SAVE_BOUND = 120
"""A save pending this long is lost (a kill and a rebalance take well under a minute)."""
OPEN_BOUND = 240
"""20 new users on a stack just started (accounts made, servers spawned past the limit)."""
USERS_RUN = uuid.uuid4().hex[:6]
"""Both cases save as the same 20 users, each on a new notebook: the second finds their
servers running (20 server starts are 1-2 minutes of the suite on 2 cores)."""


@pytest.fixture(scope="module")
async def left_open(stack_settings: StackSettings, api_key: str) -> AsyncIterator[list[str]]:
    """Sessions the cases leave open, so the next case finds their servers running (ending
    a user's last session stops the server); ended once every case has run."""
    session_ids: list[str] = []
    yield session_ids
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    ) as gateway:
        await asyncio.gather(*(gateway.delete(f"/v1/sessions/{i}") for i in session_ids))


def notebook(marker: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "id": "c",
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": f"marker = {marker!r}",
            }
        ],
    }


def marker_of(content: dict[str, Any]) -> str | None:
    for cell in content.get("cells", []):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if source.startswith("marker = "):
            return str(source[len("marker = ") :].strip("'"))
    return None


class Saver:
    """One host user who edits its notebook and saves it, one save after the other."""

    def __init__(self, run: str, index: int, saves: int) -> None:
        self.user_id = f"fault-sync-{USERS_RUN}-{index}"
        self.hub_user = hub_username("demo", self.user_id)
        self.markers = [f"{run}-{index}-{i}-{uuid.uuid4().hex}" for i in range(saves)]
        self.session: dict[str, Any] = {}


async def save_until_final(
    gateway: httpx.AsyncClient, session_id: str, where: Diagnosis | None = None
) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    created = await gateway.post(f"/v1/sessions/{session_id}/saves")
    assert created.status_code == 202, created.text
    save_id = created.json()["id"]
    try:
        async with asyncio.timeout(SAVE_BOUND):
            while True:
                response = await gateway.get(f"/v1/saves/{save_id}", params={"wait": 25})
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                if body["status"] != "pending":
                    return body, time.monotonic() - started
    except TimeoutError:
        found = await where.of(save_id) if where else ""
        raise AssertionError(f"save {save_id} still pending after {SAVE_BOUND} s{found}") from None


class Diagnosis:
    """Where a stalled save stopped: its record and outbox, and what the services logged."""

    def __init__(self, settings: StackSettings, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        self.settings = settings
        self.gateway_db = mongo[store.DATABASES["gateway"]]

    async def of(self, save_id: str) -> str:
        save = await self.gateway_db["saves"].find_one({"_id": save_id}) or {}
        marker = await self.gateway_db["gateway_outbox"].find_one({"_id": f"saves/{save_id}"})
        lines = [
            f"{log.name}: {line.strip()[:400]}"
            for log in sorted(self.settings.logs_dir.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if save_id in line
        ]
        return (
            f"; record: status_rank={save.get('status_rank')} "
            f"outbox={sorted(save.get('outbox') or {})} marker={marker is not None}; "
            f"logged: {lines[-12:]}"
        )


@pytest.mark.timeout(480)
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_sync_killed_or_restarted_mid_stream_stores_each_save_exactly_once(
    how: str,
    gateway: httpx.AsyncClient,
    hub_token: str,
    stack_settings: StackSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    left_open: list[str],
) -> None:
    run = uuid.uuid4().hex[:6]
    saves = SAVES_EACH[how]
    total = USERS * saves
    kill_after = int(total * KILL_AFTER)
    savers = [Saver(run, i, saves) for i in range(USERS)]
    opened = await asyncio.gather(
        *(
            open_session(gateway, timeout=OPEN_BOUND, user_id=s.user_id, notebook_name="faults")
            for s in savers
        )
    )
    for saver, session in zip(savers, opened, strict=True):
        assert session["status"] == "ready", session
        saver.session = session
    stored = 0
    kill_now = asyncio.Event()
    outcomes: list[dict[str, Any]] = []
    latencies: list[float] = []
    contents = httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}, timeout=60)
    where = Diagnosis(stack_settings, mongo)

    async def save_all(saver: Saver) -> None:
        nonlocal stored
        url = (
            f"{stack_settings.public_hub_url}/user/{saver.hub_user}/api/contents/"
            f"{saver.session['path']}"
        )
        for marker in saver.markers:
            put = await contents.put(
                url, json={"type": "notebook", "format": "json", "content": notebook(marker)}
            )
            assert put.status_code == 200, put.text
            outcome, seconds = await save_until_final(gateway, saver.session["id"], where)
            outcomes.append(outcome)
            latencies.append(seconds)
            stored += 1
            if stored == kill_after:
                kill_now.set()

    async def kill_sync() -> float:
        await kill_now.wait()
        return await STOPS[how](stack_settings, "sync")

    try:
        started = time.monotonic()
        *_, back_after = await asyncio.gather(*(save_all(s) for s in savers), kill_sync())
        print(
            f"[faults] sync {how} after {kill_after} of {total} saves: "
            f"ready again after {back_after:.1f} s, longest save {max(latencies):.1f} s, "
            f"all saves done in {time.monotonic() - started:.1f} s"
        )
        failed = [o for o in outcomes if o["status"] != "stored"]
        assert not failed, failed[:3]

        revisions = mongo[store.DATABASES["sync"]]["notebook_revisions"]
        ids = [s.session["notebook_id"] for s in savers]
        found = await revisions.find(
            {"notebook_id": {"$in": ids}}, {"notebook_id": 1, "revision": 1, "content_z": 1}
        ).to_list()
        records = mongo[store.DATABASES["sync"]]["notebooks"]
        logs = {
            r["_id"]: [e["revision"] for e in r.get("revision_log", [])]
            async for r in records.find({"_id": {"$in": ids}}, {"revision_log": 1})
        }
        lost = duplicated = 0
        wrong: list[str] = []
        for saver in savers:
            mine = sorted(
                (r for r in found if r["notebook_id"] == saver.session["notebook_id"]),
                key=lambda r: r["revision"],
            )
            markers = [m for r in mine if (m := marker_of(decode_content(r))) is not None]
            lost += len(set(saver.markers) - set(markers))
            duplicated += len(markers) - len(set(markers))
            # In the order saved, and every revision listed in the notebook's history.
            if markers != saver.markers:
                wrong.append(f"{saver.user_id}: revisions out of order")
            if logs[saver.session["notebook_id"]] != [r["revision"] for r in mine]:
                wrong.append(f"{saver.user_id}: history {logs[saver.session['notebook_id']]}")
        print(f"[faults] sync {how}: lost {lost}, duplicated {duplicated} of {total} revisions")
        assert (lost, duplicated, wrong) == (0, 0, [])
        assert sum(1 for r in found if marker_of(decode_content(r))) == total
    finally:
        await contents.aclose()
        left_open.extend(s.session["id"] for s in savers if s.session)


@pytest.mark.timeout(120)
async def test_a_revision_whose_writer_died_before_recording_it_stays_in_the_history(
    gateway: httpx.AsyncClient,
    hub_token: str,
    stack_settings: StackSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """Sync stores a revision, then records it on the notebook: a kill between the two.

    The state such a kill leaves is made by hand (the revision stored, the
    notebook record not moved on); the next save must list that revision in
    the history the host reads, and store its own after it.
    """
    saver = Saver(uuid.uuid4().hex[:6], 0, saves=2)
    saver.session = await open_session(gateway, user_id=saver.user_id, notebook_name="died")
    assert saver.session["status"] == "ready", saver.session
    notebook_id = saver.session["notebook_id"]
    url = (
        f"{stack_settings.public_hub_url}/user/{saver.hub_user}/api/contents/"
        f"{saver.session['path']}"
    )
    records = mongo[store.DATABASES["sync"]]["notebooks"]
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}) as http:
            for marker in saver.markers[:2]:
                put = await http.put(
                    url, json={"type": "notebook", "format": "json", "content": notebook(marker)}
                )
                assert put.status_code == 200, put.text
                outcome, _ = await save_until_final(gateway, saver.session["id"])
                assert outcome["status"] == "stored", outcome
                if marker == saver.markers[0]:
                    died_on = outcome["revision"]
                    # As if sync died right after inserting that revision.
                    await records.update_one(
                        {"_id": notebook_id},
                        {"$set": {"latest_revision": died_on - 1}, "$pop": {"revision_log": 1}},
                    )
        listed = await gateway.get(f"/v1/notebooks/{notebook_id}/revisions")
        assert listed.status_code == 200, listed.text
        numbers = sorted(r["revision"] for r in listed.json()["revisions"])
        print(f"[faults] writer died between its two writes: history {numbers}")
        assert numbers == list(range(1, died_on + 2))
    finally:
        await gateway.delete(f"/v1/sessions/{saver.session['id']}")
