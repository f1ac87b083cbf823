"""The kernel sync starts for a session's notebook is the user's own (issue 11).

Sync starts it through the user's server with a token of that user for that
server alone (never the hub's service token), so the kernel, which runs the
user's hostile code, is exactly the kernel the page would have started: the
user's account, none of the stack's secrets in its environment or files.
"""

from __future__ import annotations

import json
import uuid

import httpx

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session
from tests.stack.kernel_sessions import for_path, server_sessions

WHAT_I_HOLD = """
import json, os
print(json.dumps({"uid": os.getuid(), "environ": dict(os.environ)}))
"""


async def test_the_prestarted_kernel_holds_nothing_of_syncs_or_the_hubs(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, running_stack: StackSettings
) -> None:
    user = f"prestart-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(running_stack.tenants[0], user)
    session = await open_session(gateway, user_id=user, notebook_name="mine")
    try:
        assert session["status"] == "ready", session
        token = await user_server_token(hub, hub_user)
        hub_url = running_stack.public_hub_url
        [started] = for_path(await server_sessions(hub_url, hub_user, token), session["path"])
        async with Kernel(hub_url, hub_user, token, kernel_id=started["kernel"]["id"]) as kernel:
            result = await kernel.run(WHAT_I_HOLD)
        assert result.error is None, result
        held = json.loads(result.stdout)
        assert held["uid"] != 0
        environment = json.dumps(held["environ"])
        secrets = {
            "hub service token": running_stack.service_token_file,
            "sync's provisioner secret": stack.sync_provisioner_token_file(running_stack),
            "internal token": running_stack.secrets_dir / "internal-token",
        }
        for name, path in secrets.items():
            assert path.read_text().strip() not in environment, name
    finally:
        await gateway.delete(f"/v1/sessions/{session['id']}")
