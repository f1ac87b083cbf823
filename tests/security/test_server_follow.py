"""A forged "server stopped" notice ends nobody's session.

The provisioner takes the hub's notices of stopped servers on its internal
API (``POST /internal/hub/server-stopped``). Kernels cannot reach that port
(the egress filter, ``test_egress.py``), so the attacker here is anything
else that can: without the hub's token it is refused; and even with it (a
stolen hub token, or a hub bug), a notice naming a server that still runs
ends nothing, because the provisioner asks the hub first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from infra.settings import StackSettings
from schemas import ServerLost, ServerStopped, hub_username
from tests.stack.helpers import eventually, open_session
from tests.stack.test_server_follow import (
    END_WITHIN,
    new_user,
    provisioner_is_past,
    sessions_lost,
    watch,
)

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


async def test_a_forged_stop_notice_ends_no_session(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    kafka_options: dict[str, Any],
) -> None:
    user_id = new_user()
    hub_user = hub_username("demo", user_id)
    session = await open_session(gateway, user_id=user_id, notebook_name="target")
    assert session["status"] == "ready", session
    model = (await hub.get(f"/users/{hub_user}")).json()
    instance = model["servers"][""]["user_options"]["instance"]
    notice = {"hub_user": hub_user, "instance": instance, "cause": "crashed", "detail": "forged"}
    url = f"http://127.0.0.1:{stack_settings.provisioner_health_port}/internal/hub/server-stopped"
    sync_token = (stack_settings.secrets_dir / "sync-provisioner-token").read_text().strip()
    notices = await watch(kafka_options, ServerStopped.topic)
    outcomes = await watch(kafka_options, ServerLost.topic)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # Without the hub's token (none, a wrong one, sync's own): refused.
            for wrong in ("", "Bearer forged", f"Bearer {sync_token}"):
                headers = {"Authorization": wrong} if wrong else {}
                refused = await client.post(url, json=notice, headers=headers)
                assert refused.status_code == 401, refused.text
            # With the hub's own token, about a server that runs: taken, checked, ignored.
            hub_token = stack_settings.hub_provisioner_token_file.read_text().strip()
            taken = await client.post(
                url, json=notice, headers={"Authorization": f"Bearer {hub_token}"}
            )
            assert taken.status_code == 204, taken.text
        stopped = ServerStopped.event_type.encode()
        async with asyncio.timeout(END_WITHIN):
            async for record in notices:
                if record.key == hub_user.encode() and dict(record.headers)["ce_type"] == stopped:
                    break
        partition = TopicPartition(record.topic, record.partition)
        await eventually(lambda: provisioner_is_past(kafka_options, partition, record.offset))
        assert session["id"] not in await sessions_lost(outcomes, hub_user)
        still = (await gateway.get(f"/v1/sessions/{session['id']}")).json()
        assert still["status"] == "ready", still
    finally:
        for watcher in (notices, outcomes):
            await watcher.stop()
        await gateway.delete(f"/v1/sessions/{session['id']}")
