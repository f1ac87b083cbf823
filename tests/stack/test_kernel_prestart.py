"""The kernel of a session's notebook runs before the page opens (issue 11).

Sync starts it through the user's server's sessions API while it places the
notebook, with the session profile's kernel; JupyterLab and Notebook 7 then
connect to that session instead of starting a kernel. Another session on the
same notebook (or a redelivered placement) starts no second kernel.
"""

from __future__ import annotations

import uuid

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session
from tests.stack.kernel_sessions import for_path, server_kernels, server_sessions


async def test_a_ready_session_has_its_notebooks_kernel_running_once(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"prestart-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    hub_url = stack_settings.public_hub_url
    first = await open_session(gateway, user_id=user, notebook_name="ahead", profile="data")
    second: dict[str, object] = {}
    try:
        assert first["status"] == "ready", first
        token = await user_server_token(hub, hub_user)
        [session] = for_path(await server_sessions(hub_url, hub_user, token), first["path"])
        assert session["type"] == "notebook"
        assert session["kernel"]["name"] == first["profile"]["kernel"] == "nbembed-data"
        assert [k["id"] for k in await server_kernels(hub_url, hub_user, token)] == [
            session["kernel"]["id"]
        ]

        # The kernel is the notebook's: it runs the profile's environment.
        async with Kernel(hub_url, hub_user, token, kernel_id=session["kernel"]["id"]) as kernel:
            result = await kernel.run("import os; print(os.environ.get('NBEMBED_KERNEL'))")
        assert result.stdout.strip() == "nbembed-data", result

        # Another session on the same notebook reuses the running kernel.
        second = await open_session(
            gateway, user_id=user, notebook_id=first["notebook_id"], profile="data"
        )
        assert second["status"] == "ready", second
        assert second["path"] == first["path"]
        sessions = for_path(await server_sessions(hub_url, hub_user, token), first["path"])
        assert [(s["id"], s["kernel"]["id"]) for s in sessions] == [
            (session["id"], session["kernel"]["id"])
        ]
        assert [k["id"] for k in await server_kernels(hub_url, hub_user, token)] == [
            session["kernel"]["id"]
        ]
    finally:
        for opened in (first, second):
            if opened:
                await gateway.delete(f"/v1/sessions/{opened['id']}")
