"""Profiles cannot be borrowed or forged.

A profile is an operator's choice of what a tenant's servers run (kernel,
limits, image). A host may only name one of its own tenant's profiles: it
cannot pick another tenant's, nor slip spawner options in beside or inside
the name. A user's own code (a kernel) cannot start or restart its server
with options of its choosing through the hub either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infra.settings import StackSettings
from infra.stack import DEMO_PROFILES
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, every_gateway, open_session

ACME_ONLY = {"name": "acme-only", "display_name": "Acme's own", "kernel": "python3"}


def admin_client(stack_settings: StackSettings) -> httpx.AsyncClient:
    token = stack_settings.admin_token_file.read_text().strip()
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def probe(stack_settings: StackSettings, key: str, profile: str) -> set[int]:
    """What every gateway replica answers a session naming ``profile`` (an unknown
    notebook: 404 once the profile is accepted, so nothing starts)."""
    statuses = set()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as h:
        for base in every_gateway(stack_settings):
            answer = await h.post(
                f"{base}/v1/sessions",
                json={"user_id": "probe", "notebook_id": "no-such-notebook", "profile": profile},
            )
            statuses.add(answer.status_code)
    return statuses


@pytest.fixture
async def acme_has_its_own_profile(
    stack_settings: StackSettings, other_api_key: str
) -> AsyncIterator[None]:
    """The second demo tenant offers a profile the first does not (known to every replica)."""
    acme = stack_settings.tenants[1]
    async with admin_client(stack_settings) as admin:
        changed = await admin.put(
            f"/admin/v1/tenants/{acme}/profiles", json={"profiles": [*DEMO_PROFILES, ACME_ONLY]}
        )
        assert changed.status_code == 200, changed.text

        async def known() -> bool:
            return await probe(stack_settings, other_api_key, "acme-only") == {404}

        await eventually(known, timeout=60)
        yield
        await admin.put(f"/admin/v1/tenants/{acme}/profiles", json={"profiles": DEMO_PROFILES})


async def test_a_tenant_cannot_name_another_tenants_profile(
    acme_has_its_own_profile: None, stack_settings: StackSettings, api_key: str
) -> None:
    assert await probe(stack_settings, api_key, "acme-only") == {422}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as gateway:
        session = await gateway.post(
            "/v1/sessions", json={"user_id": "u", "notebook_name": "n", "profile": "acme-only"}
        )
        warm = await gateway.post("/v1/users/u/warm", json={"profile": "acme-only"})
    assert (session.status_code, warm.status_code) == (422, 422)
    assert session.json()["title"] == "Unknown profile"


@pytest.mark.parametrize(
    "body",
    [
        {"profile": "data", "user_options": {"cmd": ["/bin/sh"]}},
        {"profile": "data", "image": "attacker/image"},
        {"profile": {"name": "data", "image": "attacker/image"}},
        {"profile": ["data"]},
        {"profile": "data --ServerApp.token="},
        {"profile": "data", "mem_limit": "1T"},
    ],
)
async def test_a_host_cannot_slip_spawner_options_into_a_request(
    gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    session = await gateway.post(
        "/v1/sessions", json={"user_id": "u", "notebook_name": "n", **body}
    )
    warm = await gateway.post("/v1/users/u/warm", json=body)
    assert (session.status_code, warm.status_code) == (422, 422), (session.text, warm.text)


@pytest.mark.parametrize(
    "profile",
    [
        {**ACME_ONLY, "cmd": ["/bin/sh", "-c", "id"]},
        {**ACME_ONLY, "environment": {"LD_PRELOAD": "attacker.so"}},
        {**ACME_ONLY, "kernel": "python3 --ServerApp.token="},
        {**ACME_ONLY, "image": "Image With Spaces"},
    ],
)
async def test_even_an_operator_cannot_define_a_profile_beyond_its_fields(
    stack_settings: StackSettings, profile: dict[str, Any]
) -> None:
    async with admin_client(stack_settings) as admin:
        refused = await admin.put(
            f"/admin/v1/tenants/{stack_settings.tenants[1]}/profiles", json={"profiles": [profile]}
        )
    assert refused.status_code == 422, refused.text


FORGE_A_SPAWN = """
import json, os, urllib.error, urllib.request
api = os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
user = os.environ.get("JUPYTERHUB_USER", "")
token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
forged = {"user_options": {"profile": "data", "kernel": "nbembed-data", "restricted": False,
                            "mem_limit": "1T", "cmd": ["/bin/sh"], "instance": "forged"}}
answers = {}
for path in (f"/users/{user}/server", f"/users/{user}/servers/forged"):
    request = urllib.request.Request(api + path, method="POST", data=json.dumps(forged).encode(),
        headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    try:
        answers[path] = urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        answers[path] = error.code
print(json.dumps(answers))
"""


async def test_a_kernel_cannot_start_its_server_with_options_of_its_own(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"sec-profiles-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user)
    session = await open_session(gateway, user_id=user, notebook_name="forge")
    try:
        assert session["status"] == "ready", session
        before = (await hub.get(f"/users/{hub_user}")).json()["servers"][""]["user_options"]
        token = await user_server_token(hub, hub_user)
        async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
            result = await kernel.run(FORGE_A_SPAWN)
        assert result.error is None, result
        answers = json.loads(result.stdout)
        assert answers and set(answers.values()) == {403}, answers
        servers = (await hub.get(f"/users/{hub_user}")).json()["servers"]
        assert list(servers) == [""]  # no named server appeared
        assert servers[""]["user_options"] == before  # the running spawn is nbembed's own
    finally:
        await gateway.delete(f"/v1/sessions/{session['id']}")
