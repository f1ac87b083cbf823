"""Sync's credentials, event checks and save bounds, attacked on the real stack (issue 7).

A user's server runs the user's own code and may record every request that
reaches it; anyone with broker access may publish events; a kernel may write
any file at a notebook's path. Each test mounts one of these attacks and
fails if it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import psutil
import pytest

from infra import store
from infra.settings import REPO_ROOT, StackSettings
from schemas import (
    NotebookDeleted,
    NotebookStored,
    NotebookStoreFailed,
    ServerReady,
    dlq_topic,
    hub_username,
)
from schemas.server_token import TOKEN_NOTE, TOKEN_PATH
from tests.security.kernel import Kernel, user_server_token
from tests.security.sync_credentials_helpers import (
    PeakRss,
    Tap,
    publish_raw,
    report_server_save,
    sync_processes,
    wait_until_consumed,
)
from tests.stack.helpers import eventually, open_session, start_server_and_wait

TENANT = "demo"
OTHER_TENANT = "acme"

# A server under its user's control: it appends every request's Authorization
# header to a file in the user's home.
SERVER_CONFIG = REPO_ROOT / ".venv" / "etc" / "jupyter" / "jupyter_server_config.py"
"""Loaded by every single-user server (the servers' venv links this folder)."""
CAPTURE_CONFIG = """
import os
import tornado.web

_captured = os.path.expanduser("~/nbembed-captured-auth.txt")
_find_handler = tornado.web.Application.find_handler


def _record(self, request, **kwargs):
    with open(_captured, "a") as out:
        out.write((request.headers.get("Authorization") or "-") + "\\n")
    return _find_handler(self, request, **kwargs)


tornado.web.Application.find_handler = _record
"""


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    """Every test here runs against the real stack (started if it is not up)."""
    return running_stack


def provisioner_secret(settings: StackSettings) -> str:
    return (settings.secrets_dir / "sync-provisioner-token").read_text().strip()


async def new_session(gateway: httpx.AsyncClient, user_id: str, **body: Any) -> dict[str, Any]:
    session = await open_session(gateway, user_id=user_id, **body)
    assert session["status"] == "ready", session
    return session


async def whoami(stack_settings: StackSettings, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(
            f"{stack_settings.public_hub_url}/hub/api/user",
            headers={"Authorization": f"token {token}"},
        )


async def test_headers_reaching_a_users_server_carry_only_that_users_tokens(
    stack_settings: StackSettings,
    hub: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    hub_token: str,
) -> None:
    user_id = f"attacker-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(TENANT, user_id)
    session = await new_session(gateway, user_id, notebook_name="Capture")
    token = await user_server_token(hub, hub_user)
    # The strongest attacker controls their whole server. A kernel can no longer
    # plant ~/.jupyter config (disable_user_config, tests/security/test_isolation.py),
    # so the test plays that attacker: it installs the recording config where
    # every single-user server loads it, for this test only, and restarts A's.
    stopped = await hub.delete(f"/users/{hub_user}/server")
    assert stopped.status_code in (202, 204), stopped.text
    SERVER_CONFIG.write_text(CAPTURE_CONFIG)
    try:
        await asyncio.sleep(1)
        await start_server_and_wait(hub, hub_user)
        await _save_and_restore(stack_settings, gateway, session, token, user_id)
    finally:
        SERVER_CONFIG.unlink(missing_ok=True)

    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        read = await kernel.run(
            "import os\n"
            "path = os.path.expanduser('~/nbembed-captured-auth.txt')\n"
            "print(open(path).read() if os.path.exists(path) else '')"
        )
    captured = {line.strip() for line in read.stdout.splitlines() if line.strip() not in ("", "-")}
    assert f"token {token}" in captured, "the recording config did not load"

    assert f"token {hub_token}" not in captured, "the service token reached a user's server"
    assert all(hub_token not in header for header in captured)
    owned = await hub.get(f"/users/{hub_user}/tokens")
    sync_token_ids = {t["id"] for t in owned.json()["api_tokens"] if t["note"] == TOKEN_NOTE}
    seen_sync_tokens = 0
    for header in captured:
        scheme, _, value = header.partition(" ")
        assert scheme.lower() in ("token", "bearer"), header[:20]
        identity = await whoami(stack_settings, value)
        assert identity.status_code == 200, "a header that is no token of this user"
        model = identity.json()
        assert (model["kind"], model["name"]) == ("user", hub_user)
        seen_sync_tokens += model["token_id"] in sync_token_ids
    assert seen_sync_tokens >= 1, "sync's own requests were not seen by the server"


async def _save_and_restore(
    stack_settings: StackSettings,
    gateway: httpx.AsyncClient,
    session: dict[str, Any],
    token: str,
    user_id: str,
) -> None:
    """What sync does with a user's server: store a save, then restore the notebook."""
    async with Tap(stack_settings, NotebookStored.topic) as status:
        reported = await report_server_save(stack_settings, token, session["path"])
        assert reported.status_code == 202, reported.text
        await status.wait_for(
            lambda h, v: (
                h.get("ce_type") == NotebookStored.event_type
                and v["notebook_id"] == session["notebook_id"]
            ),
            timeout=30,
        )
    await new_session(gateway, user_id, notebook_id=session["notebook_id"])


async def test_sync_holds_no_service_token_and_gets_scoped_expiring_ones(
    stack_settings: StackSettings,
    hub: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    hub_token: str,
) -> None:
    for sync in sync_processes(stack_settings):
        environ = sync.environ()
        assert not [k for k, v in environ.items() if hub_token in v], "sync's environment has it"
        assert str(stack_settings.service_token_file) not in environ.values()

    user_id = f"scoped-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(TENANT, user_id)
    other_id = f"other-{uuid.uuid4().hex[:8]}"
    await new_session(gateway, user_id)
    await new_session(gateway, other_id)  # another user's running server
    provisioner = f"http://127.0.0.1:{stack_settings.provisioner_health_port}"
    async with httpx.AsyncClient(base_url=provisioner, timeout=30) as http:
        url = TOKEN_PATH.format(hub_user=hub_user)
        assert (await http.post(url)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-secret"}
        assert (await http.post(url, headers=wrong)).status_code == 401
        auth = {"Authorization": f"Bearer {provisioner_secret(stack_settings)}"}
        for bad in ("..%2Fadmin", "Admin", "a" * 65):
            bad_url = TOKEN_PATH.format(hub_user=bad)
            assert (await http.post(bad_url, headers=auth)).status_code in (404, 422)
        issued = await http.post(url, headers=auth)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert 0 < body["expires_in"] <= 900
    identity = (await whoami(stack_settings, body["token"])).json()
    assert (identity["kind"], identity["name"]) == ("user", hub_user)
    # The server scope, plus the identify scopes the hub adds for the token's own user.
    assert f"access:servers!server={hub_user}/" in identity["scopes"]
    assert set(identity["scopes"]) <= {
        f"access:servers!server={hub_user}/",
        f"read:users:name!user={hub_user}",
        f"read:users:groups!user={hub_user}",
    }, identity["scopes"]

    async with httpx.AsyncClient(
        base_url=stack_settings.public_hub_url,
        headers={"Authorization": f"token {body['token']}"},
        timeout=30,
    ) as as_sync:
        assert (await as_sync.get(f"/user/{hub_user}/api/contents/")).status_code == 200
        other_user = hub_username(TENANT, other_id)
        refused = await as_sync.get(f"/user/{other_user}/api/contents/")
        assert refused.status_code in (302, 403, 404), refused.status_code
        assert (await as_sync.get("/hub/api/users")).status_code == 403


@pytest.mark.parametrize("target", ["other_user", "outside_url", "traversal"])
async def test_forged_server_ready_is_dead_lettered_and_sends_nothing(
    stack_settings: StackSettings, target: str
) -> None:
    connections: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(1000))
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    victim = hub_username(TENANT, "victim")
    hub_user = hub_username(TENANT, f"forger-{uuid.uuid4().hex[:8]}")
    server_path = {
        "other_user": f"/user/{victim}/",
        "outside_url": f"http://127.0.0.1:{port}/",
        "traversal": f"/user/{hub_user}/../{victim}/",
    }[target]
    session_id = uuid.uuid4().hex
    data = {
        "session_id": session_id,
        "tenant_id": TENANT,
        "hub_user": hub_user,
        "server_path": server_path,
        "host_user_id": "forger",
        "notebook_id": None,
        "notebook_name": "Forged",
    }
    try:
        async with Tap(stack_settings, dlq_topic(ServerReady.topic)) as dlq:
            await publish_raw(
                stack_settings, ServerReady.topic, ServerReady.event_type, data, hub_user
            )
            headers, _ = await dlq.wait_for(
                lambda h, v: (
                    isinstance(v, dict)
                    and v.get("session_id") == session_id
                    and h.get("nbembed_dlq_consumer_group") == "nbembed-sync"
                ),
                timeout=30,
            )
        assert "server_path" in headers["nbembed_dlq_reason"]
        assert headers["nbembed_dlq_attempts"] == "0"  # refused before any handler ran
        await asyncio.sleep(0.5)
        assert connections == [], "sync sent a request to the forged server path"
    finally:
        server.close()
        await server.wait_closed()


async def test_forged_delete_for_another_tenant_deletes_nothing(
    stack_settings: StackSettings, gateway: httpx.AsyncClient, mongo: Any
) -> None:
    session = await new_session(gateway, f"owner-{uuid.uuid4().hex[:8]}")
    notebook_id = session["notebook_id"]
    db = mongo[store.DATABASES["sync"]]

    async def first_revision_stored() -> bool:
        return await db["notebook_revisions"].find_one({"_id": f"{notebook_id}:1"}) is not None

    await eventually(first_revision_stored)

    forged = NotebookDeleted(tenant_id=OTHER_TENANT, notebook_id=notebook_id)
    partition, offset = await publish_raw(
        stack_settings,
        NotebookDeleted.topic,
        NotebookDeleted.event_type,
        forged.model_dump(mode="json"),
        forged.partition_key(),
    )
    await wait_until_consumed(
        stack_settings, "nbembed-sync-saves", NotebookDeleted.topic, partition, offset, 30
    )
    assert await db["notebooks"].find_one({"_id": notebook_id}) is not None
    assert await db["notebook_revisions"].find_one({"_id": f"{notebook_id}:1"}) is not None
    assert (await gateway.get(f"/v1/notebooks/{notebook_id}")).status_code == 200


async def test_a_huge_file_fails_fast_in_little_memory_and_other_saves_flow(
    stack_settings: StackSettings, hub: httpx.AsyncClient, gateway: httpx.AsyncClient
) -> None:
    user_id = f"hoarder-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(TENANT, user_id)
    session = await new_session(gateway, user_id, notebook_name="Huge")
    neighbour_id = f"neighbour-{uuid.uuid4().hex[:8]}"
    neighbour = await new_session(gateway, neighbour_id, notebook_name="Normal")
    token = await user_server_token(hub, hub_user)
    neighbour_token = await user_server_token(hub, hub_username(TENANT, neighbour_id))
    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        grown = await kernel.run(
            f"import os\nos.truncate({session['path']!r}, 2**30)\n"
            f"print(os.path.getsize({session['path']!r}))"
        )
    assert grown.stdout.strip() == str(2**30), grown

    syncs = sync_processes(stack_settings)
    loop = asyncio.get_running_loop()
    async with Tap(stack_settings, NotebookStored.topic) as status:
        with contextlib.ExitStack() as watching:
            # Whichever replica owns the notebook's partition handles the save.
            peaks = [watching.enter_context(PeakRss(sync)) for sync in syncs]
            started = loop.time()
            assert (await report_server_save(stack_settings, token, session["path"])).is_success
            _, failed = await status.wait_for(
                lambda h, v: (
                    h.get("ce_type") == NotebookStoreFailed.event_type
                    and v["notebook_id"] == session["notebook_id"]
                ),
                timeout=30,
            )
            failed_after = loop.time() - started
            reported = await report_server_save(stack_settings, neighbour_token, neighbour["path"])
            assert reported.is_success
            await status.wait_for(
                lambda h, v: (
                    h.get("ce_type") == NotebookStored.event_type
                    and v["notebook_id"] == neighbour["notebook_id"]
                ),
                timeout=30,
            )
    rss = max(peaks, key=lambda p: p.peak - p.start)
    print(
        f"1 GiB save: store_failed after {failed_after:.2f}s; sync RSS "
        f"{rss.start / 2**20:.0f} MiB before, peak {rss.peak / 2**20:.0f} MiB"
    )
    assert failed["code"] == "too_large", failed
    assert "1024.0 MiB" in failed["reason"]
    assert failed_after < 10
    assert all(p.peak < 300 * 2**20 for p in peaks)
    assert all(psutil.pid_exists(sync.pid) for sync in syncs)


async def test_deeply_nested_json_is_an_invalid_notebook_with_a_reason(
    stack_settings: StackSettings, hub: httpx.AsyncClient, gateway: httpx.AsyncClient
) -> None:
    user_id = f"nester-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(TENANT, user_id)
    session = await new_session(gateway, user_id, notebook_name="Deep")
    token = await user_server_token(hub, hub_user)
    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        wrote = await kernel.run(
            f"open({session['path']!r}, 'w').write("
            '\'{"nbformat": 4, "cells": [], "metadata": {"x": \' + \'[\' * 100000 + '
            "']' * 100000 + '}}')"
        )
    assert wrote.error is None, wrote
    async with Tap(stack_settings, NotebookStored.topic) as status:
        assert (await report_server_save(stack_settings, token, session["path"])).is_success
        _, failed = await status.wait_for(
            lambda h, v: (
                h.get("ce_type") == NotebookStoreFailed.event_type
                and v["notebook_id"] == session["notebook_id"]
            ),
            timeout=20,
        )
    assert failed["code"] == "notebook_invalid", failed
    assert "nested" in failed["reason"]
