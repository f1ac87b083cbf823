"""Sessions follow their server: however it stops, its sessions end, and reopening works.

Three ways a user's server goes away behind nbembed's back, each on the real
stack: JupyterHub's idle culler (the real ``jupyterhub_idle_culler``, run by
the test with a 5-second timeout, as the stack's culler service, and shown
only this test's user so that no other test's server is culled), the
server's process killed with SIGKILL, and an operator stopping it through the
hub API. Each time the open session must end within a bound with the right
``end_code``, and opening the same notebook again must give a ready session
whose server has the stored content.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.settings import StackSettings
from schemas import CloudEvent, ServerLost, ServerStopped, hub_username
from tests.stack.helpers import SERVER_MODULE, eventually, open_session

END_WITHIN = 30.0
"""Seconds from the server's stop to the session's end: the hub notices a dead process
within its 1 s poll; the rest is one HTTP notice and three Kafka hops."""


@pytest.fixture
async def proxy_hub(
    stack_settings: StackSettings, hub_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's public proxy with the nbembed service token (reaches users' servers)."""
    async with httpx.AsyncClient(
        base_url=stack_settings.public_hub_url,
        headers={"Authorization": f"token {hub_token}"},
        timeout=60,
    ) as client:
        yield client


async def open_with_content(
    gateway: httpx.AsyncClient, proxy_hub: httpx.AsyncClient, user_id: str, marker: str
) -> dict[str, Any]:
    """A ready session on a new notebook whose stored revision holds ``marker``."""
    session = await open_session(gateway, user_id=user_id, notebook_name=f"follow {marker}")
    assert session["status"] == "ready", session
    hub_user = hub_username("demo", user_id)
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [{"cell_type": "markdown", "id": "m1", "metadata": {}, "source": marker}],
    }
    put = await proxy_hub.put(
        f"/user/{hub_user}/api/contents/{session['path']}",
        json={"type": "notebook", "format": "json", "content": notebook},
    )
    assert put.status_code in (200, 201), put.text
    save = await gateway.post(f"/v1/sessions/{session['id']}/saves")
    assert save.status_code == 202, save.text
    stored = await gateway.get(f"/v1/saves/{save.json()['id']}", params={"wait": 25})
    assert stored.json()["status"] == "stored", stored.text
    return session


async def wait_until_ended(
    gateway: httpx.AsyncClient, session_id: str, timeout: float
) -> dict[str, Any]:
    """Long-poll a ready session (status=ready) until it is no longer ready."""
    async with asyncio.timeout(timeout):
        while True:
            answer = await gateway.get(
                f"/v1/sessions/{session_id}", params={"wait": 25, "status": "ready"}
            )
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if body["status"] != "ready":
                return body


async def reopen_and_check(
    gateway: httpx.AsyncClient,
    proxy_hub: httpx.AsyncClient,
    user_id: str,
    notebook_id: str,
    marker: str,
) -> None:
    """Opening the notebook again gives a working session with the stored content."""
    again = await open_session(gateway, user_id=user_id, notebook_id=notebook_id)
    assert again["status"] == "ready", again
    assert again["iframe_url"], again
    hub_user = hub_username("demo", user_id)
    content = await proxy_hub.get(
        f"/user/{hub_user}/api/contents/{again['path']}", params={"content": 1}
    )
    assert content.status_code == 200, content.text
    cells = content.json()["content"]["cells"]
    assert [cell["source"] for cell in cells] == [marker]
    ended = await gateway.delete(f"/v1/sessions/{again['id']}")
    assert ended.status_code == 204


async def follows(
    gateway: httpx.AsyncClient,
    proxy_hub: httpx.AsyncClient,
    stop: Callable[[str], Awaitable[None]],
    *,
    code: str,
    stop_within: float = END_WITHIN,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Open a notebook, stop its server with ``stop``, see the session end, reopen it."""
    user_id = user_id or new_user()
    marker = f"kept {uuid.uuid4().hex[:8]}"
    session = await open_with_content(gateway, proxy_hub, user_id, marker)
    started = time.monotonic()
    await stop(hub_username("demo", user_id))
    ended = await wait_until_ended(gateway, session["id"], stop_within)
    print(f"{code}: session ended {time.monotonic() - started:.2f} s after the stop began")
    assert ended["status"] == "ended", ended
    assert ended["end_code"] == code, ended
    assert "new session" in ended["end_reason"], ended
    assert ended["iframe_url"] is None
    await reopen_and_check(gateway, proxy_hub, user_id, session["notebook_id"], marker)
    return ended


def new_user() -> str:
    return f"follow-{uuid.uuid4().hex[:10]}"


def server_pid(hub_user: str) -> int:
    """The PID of ``hub_user``'s single-user server process (not its kernels)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if SERVER_MODULE.encode() in cmdline and f"JUPYTERHUB_USER={hub_user}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no server process for {hub_user}")


async def test_a_killed_server_ends_its_session_and_reopening_works(
    gateway: httpx.AsyncClient, proxy_hub: httpx.AsyncClient
) -> None:
    async def kill(hub_user: str) -> None:
        os.kill(server_pid(hub_user), signal.SIGKILL)

    ended = await follows(gateway, proxy_hub, kill, code="server-crashed")
    assert "-9" in ended["end_reason"], ended  # the exit status, for the developer


async def test_an_operator_stop_through_the_hub_api_ends_the_session(
    gateway: httpx.AsyncClient, proxy_hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    ops_token = stack_settings.hub_ops_token_file.read_text().strip()

    async def stop(hub_user: str) -> None:
        answer = await proxy_hub.delete(
            f"/hub/api/users/{hub_user}/server", headers={"Authorization": f"token {ops_token}"}
        )
        assert answer.status_code in (202, 204), answer.text

    ended = await follows(gateway, proxy_hub, stop, code="server-stopped")
    assert "service ops" in ended["end_reason"], ended


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def hub_showing_only(hub_url: str, hub_user: str) -> AsyncIterator[str]:
    """A pass-through to the hub API that lists only ``hub_user`` and stops no one else.

    The culler run by the test sees a hub with one user: every other test's
    server on the shared stack stays out of its reach.
    """
    forward = httpx.AsyncClient(base_url=hub_url, timeout=30)

    async def relay(request: Request) -> Response:
        path = request.url.path
        if request.method == "DELETE" and not path.startswith(f"/hub/api/users/{hub_user}/"):
            return Response(status_code=403)
        answer = await forward.request(
            request.method,
            path,
            params=request.query_params,
            headers={k: v for k, v in request.headers.items() if k in ("authorization", "accept")},
            content=await request.body(),
        )
        if request.method == "GET" and path.rstrip("/") == "/hub/api/users":
            model = answer.json()
            items = model["items"] if isinstance(model, dict) else model
            mine = [user for user in items if user["name"] == hub_user]
            if isinstance(model, dict):
                return JSONResponse({**model, "items": mine, "_pagination": {"next": None}})
            return JSONResponse(mine)
        return Response(answer.content, answer.status_code, media_type="application/json")

    port = _free_port()
    app = Starlette(routes=[Route("/{path:path}", relay, methods=["GET", "DELETE", "POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hub/api"
    finally:
        server.should_exit = True
        await serving
        await forward.aclose()


async def test_the_idle_culler_ends_the_session_and_reopening_works(
    gateway: httpx.AsyncClient, proxy_hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user_id = new_user()
    culler_token = stack_settings.hub_culler_token_file.read_text().strip()
    culler: subprocess.Popen[bytes] | None = None
    async with hub_showing_only(
        stack_settings.public_hub_url, hub_username("demo", user_id)
    ) as url:

        async def cull(_: str) -> None:
            # The real culler, as the stack's culler service, with a 5 s idle timeout.
            nonlocal culler
            culler = subprocess.Popen(  # noqa: ASYNC220 - runs beside the test, ended below
                [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--url={url}",
                    "--timeout=5",
                    "--cull-every=2",
                ],
                env={**os.environ, "JUPYTERHUB_API_TOKEN": culler_token},
            )

        try:
            # Idle 5 s, seen by a culler pass every 2 s, then the session's end.
            await follows(
                gateway,
                proxy_hub,
                cull,
                code="server-culled",
                stop_within=END_WITHIN + 10,
                user_id=user_id,
            )
        finally:
            if culler is not None:
                culler.terminate()
                culler.wait(timeout=10)


async def provisioner_is_past(
    kafka_options: dict[str, Any], partition: TopicPartition, offset: int
) -> bool:
    """Whether the provisioner's group has committed past ``offset`` (it handled the event)."""
    admin = AIOKafkaAdminClient(**kafka_options)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets("nbembed-provisioner")
    finally:
        await admin.close()
    return partition in offsets and offsets[partition].offset > offset


async def watch(kafka_options: dict[str, Any], topic: str) -> AIOKafkaConsumer:
    """A consumer of every partition of ``topic`` from its end as it is now (no group)."""
    consumer = AIOKafkaConsumer(**kafka_options)
    await consumer.start()
    # aiokafka has no public call that waits for one topic's metadata; its producer uses this.
    partitions = await consumer._client._wait_on_metadata(topic)
    assert partitions, topic
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    await consumer.seek_to_end()
    return consumer


async def sessions_lost(watcher: AIOKafkaConsumer, hub_user: str) -> list[str]:
    """Every session id the provisioner's ``server.lost`` events named for ``hub_user``,
    read up to the end of the topic as it is now."""
    lost: list[str] = []
    ends = await watcher.end_offsets(list(watcher.assignment()))

    async def behind() -> bool:
        for tp, end in ends.items():
            if await watcher.position(tp) < end:
                return True
        return False

    async with asyncio.timeout(END_WITHIN):
        while await behind():
            for records in (await watcher.getmany(timeout_ms=500)).values():
                for record in records:
                    headers = dict(record.headers)
                    if headers.get("ce_type") != ServerLost.event_type.encode():
                        continue
                    event = CloudEvent.from_kafka(ServerLost, headers, record.value)
                    if event.data.hub_user == hub_user:
                        lost += event.data.session_ids
    return lost


async def test_a_session_requested_while_the_server_stops_still_opens(
    gateway: httpx.AsyncClient,
    proxy_hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    kafka_options: dict[str, Any],
) -> None:
    """The stop's notice must not end a session that got the server started again."""
    user_id = new_user()
    hub_user = hub_username("demo", user_id)
    ops = {"Authorization": f"token {stack_settings.hub_ops_token_file.read_text().strip()}"}
    first = await open_session(gateway, user_id=user_id, notebook_name="first")
    assert first["status"] == "ready", first
    notices = await watch(kafka_options, ServerStopped.topic)
    outcomes = await watch(kafka_options, ServerLost.topic)
    opened = [first]
    try:
        stopping = asyncio.create_task(
            proxy_hub.delete(f"/hub/api/users/{hub_user}/server", headers=ops)
        )
        await asyncio.sleep(0.05)  # the hub has begun stopping it
        second = await open_session(gateway, user_id=user_id, notebook_name="second")
        opened.append(second)
        assert (await stopping).status_code in (202, 204)
        assert second["status"] == "ready", second

        # The hub's notice of that stop reaches the provisioner, which handles it...
        stopped = ServerStopped.event_type.encode()
        async with asyncio.timeout(END_WITHIN):
            async for notice in notices:
                if notice.key == hub_user.encode() and dict(notice.headers)["ce_type"] == stopped:
                    break
        partition = TopicPartition(notice.topic, notice.partition)
        await eventually(lambda: provisioner_is_past(kafka_options, partition, notice.offset))
        # ...and whatever it ended, never the session on the server started again.
        assert second["id"] not in await sessions_lost(outcomes, hub_user)
        now = (await gateway.get(f"/v1/sessions/{second['id']}")).json()
        assert now["status"] == "ready", now
        works = await proxy_hub.get(f"/user/{hub_user}/api/contents/{second['path']}")
        assert works.status_code == 200, works.text
    finally:
        for watcher in (notices, outcomes):
            await watcher.stop()
        for session in opened:
            await gateway.delete(f"/v1/sessions/{session['id']}")
