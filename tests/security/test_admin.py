"""Only the operator manages tenants: code in a user's kernel cannot.

Attacks from a real kernel: (a) read the operator credential from the stack's
secrets; (b) call the admin API with what a kernel holds (its server's hub
token, as `Bearer` and as `token`) or with nothing, to create a tenant of its
own, list tenants, rotate the demo tenant's key (locking the host out) or
re-point its origins to a page of the attacker's; (c) learn another tenant's
origins from the frame-ancestors endpoints (its server's, and the hub's per
tenant). Each test fails if the attack works.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from infra.settings import StackSettings
from tests.security.kernel import run_in_kernel, session_users
from tests.stack.helpers import eventually, statuses_with_key

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("running_stack")]

ATTACK = """
import json, os, urllib.request, urllib.error

gateway = "http://127.0.0.1:{port}"
token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
results = {{}}
try:
    open({token_file!r}).read()
    results["read the operator credential"] = "allowed"
except OSError as error:
    results["read the operator credential"] = "refused: " + type(error).__name__

def call(method, path, body, auth):
    headers = {{"Content-Type": "application/json"}}
    if auth:
        headers["Authorization"] = auth
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(gateway + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code

for label, auth in (("no credential", ""), ("Bearer server token", "Bearer " + token),
                    ("token server token", "token " + token)):
    results[label] = {{
        "create": call("POST", "/admin/v1/tenants", {{"id": "evil"}}, auth),
        "list": call("GET", "/admin/v1/tenants", None, auth),
        "rotate demo": call("POST", "/admin/v1/tenants/demo/rotate-key",
                            {{"grace_seconds": 0}}, auth),
        "re-point demo": call("PUT", "/admin/v1/tenants/demo/origins",
                              {{"allowed_origins": ["https://attacker.example"]}}, auth),
        "demo's framers (hub only)": call("GET", "/internal/tenants/demo/frame-ancestors",
                                          None, auth),
    }}
with urllib.request.urlopen(urllib.request.Request(gateway + "/internal/frame-ancestors",
        headers={{"Authorization": "token " + token}}), timeout=10) as answer:
    results["frame-ancestors"] = json.loads(answer.read())
print(json.dumps(results))
"""


async def tenant_client(stack_settings: StackSettings, tenant_id: str, origin: str) -> str:
    """A new tenant, made by the operator; its API key once it works."""
    token = stack_settings.admin_token_file.read_text().strip()
    base = f"http://127.0.0.1:{stack_settings.gateway_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        created = await http.post(
            "/admin/v1/tenants",
            json={"id": tenant_id, "allowed_origins": [origin]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        key: str = created.json()["api_key"]

    async def known_everywhere() -> bool:  # each gateway replica reloads tenants on its own
        return await statuses_with_key(stack_settings, key) == {200}

    await eventually(known_everywhere, timeout=30)
    return key


async def test_a_kernel_cannot_manage_tenants_or_learn_other_tenants_origins(
    stack_settings: StackSettings, gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> None:
    tenant_id = "m" + uuid.uuid4().hex[:8]
    key = await tenant_client(stack_settings, tenant_id, "https://own.example.test")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as own_gateway:
        (mallory,) = await session_users(own_gateway, hub, tenant_id, ("mallory",), "admin")
    code = ATTACK.format(
        port=stack_settings.gateway_port, token_file=str(stack_settings.admin_token_file)
    )
    try:
        results = json.loads(await run_in_kernel(stack_settings.public_hub_url, mallory, code))
    finally:
        await hub.delete(f"/users/{mallory.hub_user}/server")

    assert results.pop("read the operator credential").startswith("refused")
    origins = results.pop("frame-ancestors")["origins"]
    for label, answers in results.items():
        assert set(answers.values()) == {401}, (label, answers)
    # Only its own tenant's origins, and the demo tenant is untouched.
    assert origins == ["https://own.example.test"]
    listed = await gateway.get("/v1/notebooks", params={"user_id": "nobody"})
    assert listed.status_code == 200, "the demo tenant's key must still work"
