"""A kernel against the audit trail: floods, huge and malformed reports, forged users.

Facts only a user's server sees (a kernel started, a download refused) reach
the gateway from that server with the user's own hub token, which the
user's kernel holds too (``JUPYTERHUB_API_TOKEN`` is in its environment). So
the attacker here is a real kernel posting reports with that token: it may
add records to its own user's trail, within bounds, and nothing else.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from services.gateway.settings import GatewaySettings
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session

PRELUDE = """
import json, os, time, collections, httpx
url = os.environ["NBEMBED_GATEWAY_URL"] + "/internal/audit-reports"
auth = {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}
"""

FLOOD = (
    PRELUDE
    + """
counts = collections.Counter()
start = time.monotonic()
with httpx.Client(headers=auth, timeout=30) as http:
    for i in range(10_000):
        answer = http.post(url, json={"kind": "download.refused", "detail": {"n": str(i)}})
        counts[answer.status_code] += 1
print(json.dumps({"counts": counts, "seconds": time.monotonic() - start}))
"""
)

OVERSIZED = (
    PRELUDE
    + """
def status(**request):
    try:
        return httpx.post(url, headers={**auth, "content-type": "application/json"},
                          timeout=30, **request).status_code
    except httpx.HTTPError as exc:  # the gateway may close the connection mid-upload
        return type(exc).__name__
huge = b'{"kind": "download.refused", "detail": {"huge": "' + b"a" * (10 << 20) + b'"}}'
def chunks():
    yield b'{"kind": "download.refused", "detail": {"chunked": "'
    for _ in range(1000):
        yield b"a" * 10_000
    yield b'"}}'
print(json.dumps({
    "ten_mb": status(content=huge),
    "chunked": status(content=chunks()),
    "many_keys": status(json={"kind": "download.refused",
                              "detail": {f"k{i}": "v" for i in range(17)}}),
    "long_value": status(json={"kind": "download.refused", "detail": {"long": "v" * 513}}),
    "forged_user": status(json={"kind": "kernel.started", "user_id": "someone-else"}),
    "forged_tenant": status(json={"kind": "kernel.started", "tenant_id": "acme"}),
    "other_kind": status(json={"kind": "session.ended"}),
}))
"""
)


async def _trail(gateway: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"user_id": user, "limit": 100}
    while True:
        body = (await gateway.get("/v1/audit", params=params)).json()
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        params["cursor"] = body["next_cursor"]


async def _healthy_within(stack_settings: StackSettings, seconds: float) -> None:
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        answer = await http.get(f"http://127.0.0.1:{stack_settings.gateway_port}/healthz")
        assert answer.status_code == 200
        assert time.monotonic() - started < seconds


async def test_oversized_and_malformed_reports_are_refused_and_record_nothing(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"audit-big-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username("demo", user)
    await open_session(gateway, user_id=user, notebook_name="Big")
    try:
        token = await user_server_token(hub, hub_user)
        async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
            result = await kernel.run(OVERSIZED, timeout=120)
        assert result.error is None, result.error
        statuses = json.loads(result.stdout)
        assert statuses["ten_mb"] in (413, "RemoteProtocolError", "WriteError"), statuses
        assert statuses["chunked"] in (411, "RemoteProtocolError", "WriteError"), statuses
        for name in ("many_keys", "long_value", "forged_user", "forged_tenant", "other_kind"):
            assert statuses[name] == 422, (name, statuses)
        await _healthy_within(stack_settings, 2)

        async def kernel_start_recorded() -> bool:
            return any(i["kind"] == "kernel.started" for i in await _trail(gateway, user))

        await eventually(kernel_start_recorded, timeout=30)
        trail = await _trail(gateway, user)
        assert not [i for i in trail if i["kind"] == "download.refused"], trail
        assert {i["user_id"] for i in trail} == {user}
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_a_kernel_flooding_reports_is_bounded_and_silences_nobody_else(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    run = uuid.uuid4().hex[:8]
    flooder, other = f"audit-flood-{run}", f"audit-calm-{run}"
    flooder_hub, other_hub = hub_username("demo", flooder), hub_username("demo", other)
    await open_session(gateway, user_id=flooder, notebook_name="Flood")
    await open_session(gateway, user_id=other, notebook_name="Calm")
    settings = GatewaySettings.model_fields
    burst = settings["audit_report_burst"].default
    rate = settings["audit_report_per_second"].default
    try:
        token = await user_server_token(hub, flooder_hub)
        async with Kernel(stack_settings.public_hub_url, flooder_hub, token) as kernel:
            result = await kernel.run(FLOOD, timeout=600)
        assert result.error is None, result.error
        flood = json.loads(result.stdout)
        print("flood:", flood)  # the README's figure (run with -s)
        counts = {int(status): n for status, n in flood["counts"].items()}
        accepted = counts.get(202, 0)
        assert set(counts) <= {202, 429}, counts
        # Each gateway replica has its own budget (the setting says so).
        budget = burst + rate * flood["seconds"] + 1
        assert 1 <= accepted <= budget * stack_settings.replicas, flood
        assert counts[429] == 10_000 - accepted
        await _healthy_within(stack_settings, 2)

        # Another user's server is not throttled by the flood.
        other_token = await user_server_token(hub, other_hub)
        async with httpx.AsyncClient() as http:
            calm = await http.post(
                f"http://127.0.0.1:{stack_settings.gateway_port}/internal/audit-reports",
                json={"kind": "download.refused", "detail": {"path": "calm.csv"}},
                headers={"Authorization": f"token {other_token}"},
            )
        assert calm.status_code == 202, calm.text

        async def all_recorded() -> bool:
            refused = [i for i in await _trail(gateway, flooder) if i["kind"] == "download.refused"]
            return len(refused) >= accepted

        await eventually(all_recorded, timeout=60)
        trail = await _trail(gateway, flooder)
        refused = [i for i in trail if i["kind"] == "download.refused"]
        throttled = [i for i in trail if i["kind"] == "reports.throttled"]
        # Exactly the accepted reports, each once; the refusals leave one mark per burst.
        assert len(refused) == len({i["detail"]["n"] for i in refused}) == accepted
        assert 1 <= len(throttled) <= accepted - burst + 2, (len(throttled), accepted)
        assert throttled[0]["reported_by"] == "nbembed"

        async def calm_recorded() -> bool:
            return any(i["kind"] == "download.refused" for i in await _trail(gateway, other))

        await eventually(calm_recorded, timeout=30)
    finally:
        await hub.delete(f"/users/{flooder_hub}/server")
        await hub.delete(f"/users/{other_hub}/server")
