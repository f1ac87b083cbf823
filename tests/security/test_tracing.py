"""A user's server cannot put its work into another user's trace.

Trace context is input like any other: a save report from a user's server
carries whatever ``traceparent`` its code chooses. If the gateway took it as the
parent, a server knowing a trace id of another user's session (a leaked log
line, a shared support ticket) could graft its spans into that trace. The
gateway's internal API only links to such a context, from a new trace.
"""

from __future__ import annotations

import uuid

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session
from tests.stack.tracing_helpers import HostTrace, service_of

# Runs in alice's kernel: change her own open notebook and report the save the way
# the post-save hook does, with her server's hub token, plus bob's trace context.
REPORT_IN_ANOTHERS_TRACE = """
import json, os, httpx
path = {path!r}
nb = json.load(open(path))
nb["cells"].append({{"cell_type": "markdown", "id": "traced", "metadata": {{}}, "source": "x"}})
json.dump(nb, open(path, "w"))
answer = httpx.post(os.environ["NBEMBED_GATEWAY_URL"] + "/internal/server-saves",
                    json={{"path": path}},
                    headers={{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"],
                              "traceparent": {traceparent!r}, "tracestate": "x=" + "y" * 5000}})
print(answer.status_code)
"""


async def test_a_servers_save_report_cannot_join_another_users_trace(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    run = uuid.uuid4().hex[:8]
    victim = HostTrace()
    bob = {"user_id": f"traced-bob-{run}", "notebook_name": "b"}
    created = await gateway.post("/v1/sessions", json=bob, headers=victim.headers)
    assert created.status_code == 202, created.text
    alice = await open_session(gateway, user_id=f"traced-alice-{run}", notebook_name="a")
    assert alice["status"] == "ready", alice
    alice_hub = hub_username(stack_settings.tenants[0], f"traced-alice-{run}")
    token = await user_server_token(hub, alice_hub)

    async with Kernel(stack_settings.public_hub_url, alice_hub, token) as kernel:
        result = await kernel.run(
            REPORT_IN_ANOTHERS_TRACE.format(path=alice["path"], traceparent=victim.traceparent)
        )
    assert result.error is None, result.error
    assert result.stdout.strip() == "202"  # the save itself is accepted ...

    async def stored() -> bool:
        answer = await gateway.get(f"/v1/notebooks/{alice['notebook_id']}")
        return answer.status_code == 200 and '"traced"' in answer.text

    await eventually(stored, timeout=60)  # ... and stored, through sync

    async def bob_traced() -> bool:  # bob's session reached sync in his trace
        return any(service_of(s) == "nbembed-sync" for s in victim.spans(stack_settings))

    await eventually(bob_traced, timeout=60)
    traced = victim.spans(stack_settings)
    grafted = [
        (service_of(span), span["name"])
        for span in traced
        if "server-saves" in span["name"] or "nbembed.notebooks " in span["name"]
    ]
    assert grafted == [], f"alice's save was recorded in bob's trace: {grafted}"
