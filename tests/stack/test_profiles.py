"""Profiles: a session names one of its tenant's environments and its notebook runs that kernel.

The demo tenants offer ``python`` (the default ``python3`` kernel) and
``data`` (a second venv with ``tabulate``, infra/kernels.py). The kernel is
started as JupyterLab starts it: the one the placed notebook's metadata names.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session

WHICH_ENVIRONMENT = """
import importlib.util, json, os, sys
print(json.dumps({
    "prefix": sys.prefix,
    "kernel": os.environ.get("NBEMBED_KERNEL", ""),
    "tabulate": importlib.util.find_spec("tabulate") is not None,
}))
"""


async def kernel_of_notebook(
    stack_settings: StackSettings, hub_user: str, token: str, path: str
) -> str:
    """The kernel the notebook's metadata names (what Jupyter starts when it opens it)."""
    url = f"{stack_settings.public_hub_url}/user/{hub_user}/api/contents/{path}"
    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as http:
        notebook = await http.get(url, params={"content": 1})
    assert notebook.status_code == 200, notebook.text
    name: str = notebook.json()["content"]["metadata"]["kernelspec"]["name"]
    return name


async def environment(
    stack_settings: StackSettings, hub_user: str, token: str, kernel: str
) -> dict[str, Any]:
    async with Kernel(stack_settings.public_hub_url, hub_user, token, kernel) as running:
        result = await running.run(WHICH_ENVIRONMENT)
    assert result.error is None, result
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def test_two_sessions_with_two_profiles_run_two_kernels(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"profiles-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    default = await open_session(gateway, user_id=user, notebook_name="plain")
    data = await open_session(gateway, user_id=user, notebook_name="tables", profile="data")
    try:
        assert (default["status"], data["status"]) == ("ready", "ready"), (default, data)
        assert default["profile"]["name"] == "python"  # the tenant's default
        assert (data["profile"]["name"], data["profile"]["kernel"]) == ("data", "nbembed-data")
        token = await user_server_token(hub, hub_user)
        kernels = [
            await kernel_of_notebook(stack_settings, hub_user, token, session["path"])
            for session in (default, data)
        ]
        assert kernels == ["python3", "nbembed-data"]
        plain, tables = [
            await environment(stack_settings, hub_user, token, kernel) for kernel in kernels
        ]
        assert (plain["kernel"], plain["tabulate"]) == ("", False)
        assert (tables["kernel"], tables["tabulate"]) == ("nbembed-data", True)
        assert tables["prefix"].endswith("/kernels/nbembed-data")
        assert plain["prefix"] != tables["prefix"]
        server = (await hub.get(f"/users/{hub_user}")).json()["servers"][""]
        # Both profiles differ only in kernel: one server runs both.
        assert server["user_options"]["profile"] == "python"
    finally:
        for session in (default, data):
            await gateway.delete(f"/v1/sessions/{session['id']}")


async def test_an_unknown_profile_is_a_clear_422(gateway: httpx.AsyncClient) -> None:
    refused = await gateway.post(
        "/v1/sessions", json={"user_id": "u", "notebook_name": "n", "profile": "gpu-large"}
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["title"] == "Unknown profile"
    assert "gpu-large" in problem["detail"] and "python, data" in problem["detail"]
    warm = await gateway.post("/v1/users/u/warm", json={"profile": "gpu-large"})
    assert warm.status_code == 422 and warm.json()["title"] == "Unknown profile"


async def test_a_stored_notebook_reopens_with_the_sessions_profile(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"profiles-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    first = await open_session(gateway, user_id=user, notebook_name="again")
    assert first["status"] == "ready", first
    await gateway.delete(f"/v1/sessions/{first['id']}")
    second = await open_session(
        gateway, user_id=user, notebook_id=first["notebook_id"], profile="data"
    )
    try:
        assert second["status"] == "ready", second
        token = await user_server_token(hub, hub_user)
        kernel = await kernel_of_notebook(stack_settings, hub_user, token, second["path"])
        assert kernel == "nbembed-data"
    finally:
        await gateway.delete(f"/v1/sessions/{second['id']}")
