"""Tenants as data: an operator creates, rotates, re-originates and disables tenants
with `python -m nbembed.admin` while the stack runs, and each change takes effect
within seconds, with no restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx

from infra.settings import REPO_ROOT, StackSettings
from schemas import hub_username
from tests.stack.helpers import (
    IN_A_FRAME,
    eventually,
    every_gateway,
    open_session,
    statuses_with_key,
)


def admin(stack_settings: StackSettings, *args: str) -> Any:
    """Run the operator's CLI as an operator would, against the running gateway."""
    env = {
        **os.environ,
        "NBEMBED_ADMIN_URL": f"http://127.0.0.1:{stack_settings.gateway_port}",
        "NBEMBED_ADMIN_TOKEN_FILE": str(stack_settings.admin_token_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nbembed.admin", "tenants", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def client(stack_settings: StackSettings, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


async def status_is(stack_settings: StackSettings, key: str, expected: int) -> bool:
    """Every gateway replica answers ``expected`` (each reloads tenants on its own)."""
    return await statuses_with_key(stack_settings, key) == {expected}


async def preflights_allow(stack_settings: StackSettings, origin: str) -> set[bool]:
    """Whether each gateway replica allows ``origin`` in a CORS preflight."""
    allowed: set[bool] = set()
    async with httpx.AsyncClient() as http:
        for base in every_gateway(stack_settings):
            answer = await http.options(
                f"{base}/v1/sessions/x/saves",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            allowed.add(answer.headers.get("access-control-allow-origin") == origin)
    return allowed


async def preflight_allows(stack_settings: StackSettings, origin: str) -> bool:
    return await preflights_allow(stack_settings, origin) == {True}


async def preflight_refuses(stack_settings: StackSettings, origin: str) -> bool:
    return await preflights_allow(stack_settings, origin) == {False}


async def test_a_tenant_created_at_run_time_opens_notebooks_within_seconds(
    stack_settings: StackSettings, hub: httpx.AsyncClient
) -> None:
    tenant_id = "t" + uuid.uuid4().hex[:8]
    created = admin(stack_settings, "create", tenant_id, "--origin", "https://app.example.test")
    assert created["id"] == tenant_id and created["api_key"].startswith("nbk_")
    assert tenant_id in {t["id"] for t in admin(stack_settings, "list")}
    key = created["api_key"]

    await eventually(lambda: status_is(stack_settings, key, 200))
    async with client(stack_settings, key) as http:
        session = await open_session(http, user_id="carol", notebook_name="first")
    try:
        assert session["status"] == "ready", session
    finally:
        await hub.delete(f"/users/{hub_username(tenant_id, 'carol')}/server")
    # Its origin is allowed for the SDK's calls; nobody else's is.
    await eventually(lambda: preflight_allows(stack_settings, "https://app.example.test"))
    assert await preflight_refuses(stack_settings, "https://evil.example.test")


async def test_a_rotated_key_keeps_the_old_one_for_its_grace_only(
    stack_settings: StackSettings,
) -> None:
    tenant_id = "r" + uuid.uuid4().hex[:8]
    old = admin(stack_settings, "create", tenant_id)["api_key"]
    await eventually(lambda: status_is(stack_settings, old, 200))

    new = admin(stack_settings, "rotate-key", tenant_id, "--grace", "600")["api_key"]
    await eventually(lambda: status_is(stack_settings, new, 200))
    assert await status_is(stack_settings, old, 200)  # within its grace

    newest = admin(stack_settings, "rotate-key", tenant_id, "--grace", "0")["api_key"]
    await eventually(lambda: status_is(stack_settings, newest, 200))
    # No grace: gone at each replica's next reload; only one previous key is kept.
    await eventually(lambda: status_is(stack_settings, new, 401))
    await eventually(lambda: status_is(stack_settings, old, 401))


async def test_origins_restricted_mode_and_disabling_take_effect_without_restart(
    stack_settings: StackSettings,
) -> None:
    tenant_id = "o" + uuid.uuid4().hex[:8]
    # Origins of this test's own: another tenant allowing one would allow its preflight.
    one, two = (f"https://{n}-{tenant_id}.example.test" for n in ("one", "two"))
    key = admin(stack_settings, "create", tenant_id, "--origin", one)["api_key"]
    await eventually(lambda: preflight_allows(stack_settings, one))

    admin(stack_settings, "set-origins", tenant_id, two)
    await eventually(lambda: preflight_allows(stack_settings, two))
    await eventually(lambda: preflight_refuses(stack_settings, one))

    admin(stack_settings, "set-restricted", tenant_id, "true")

    async def refuses_weaker() -> bool:
        async with client(stack_settings, key) as http:
            answer = await http.post(
                "/v1/sessions", json={"user_id": "u", "notebook_name": "n", "restricted": False}
            )
        return answer.status_code == 422

    await eventually(refuses_weaker)

    admin(stack_settings, "disable", tenant_id)
    await eventually(lambda: status_is(stack_settings, key, 401))
    admin(stack_settings, "enable", tenant_id)
    await eventually(lambda: status_is(stack_settings, key, 200))


async def test_the_admin_api_refuses_everyone_but_the_operator(
    stack_settings: StackSettings, api_key: str
) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}"
    ) as http:
        for headers in ({}, {"Authorization": f"Bearer {api_key}"}, {"Authorization": "Bearer x"}):
            listed = await http.get("/admin/v1/tenants", headers=headers)
            assert listed.status_code == 401
            assert listed.headers["content-type"] == "application/problem+json"
            created = await http.post("/admin/v1/tenants", headers=headers, json={"id": "intruder"})
            assert created.status_code == 401
    assert "intruder" not in {t["id"] for t in admin(stack_settings, "list")}


async def test_bad_admin_requests_get_clear_errors(stack_settings: StackSettings) -> None:
    token = stack_settings.admin_token_file.read_text().strip()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        taken = await http.post("/admin/v1/tenants", json={"id": "demo"})
        assert taken.status_code == 409
        path = await http.post(
            "/admin/v1/tenants",
            json={"id": "p" + uuid.uuid4().hex[:8], "allowed_origins": ["https://a.test/page"]},
        )
        assert path.status_code == 422 and "not an origin" in path.json()["detail"]
        unknown = await http.put("/admin/v1/tenants/nosuch/origins", json={"allowed_origins": []})
        assert unknown.status_code == 404


async def server_csp(stack_settings: StackSettings, hub_token: str, hub_user: str) -> str:
    """The frame-ancestors directive of the user's running server (its API adds others)."""
    url = f"{stack_settings.public_hub_url}/user/{hub_user}/api/status"
    async with httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}) as http:
        answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    directives = [d.strip() for d in answer.headers["content-security-policy"].split(";")]
    [framers] = [d for d in directives if d.startswith("frame-ancestors")]
    return framers


async def hub_page_csp(stack_settings: StackSettings, page: str) -> str:
    """The CSP of a hub page as a browser without a login gets it (a redirect to login)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(f"{stack_settings.public_hub_url}/hub/{page}")
    return answer.headers["content-security-policy"]


async def test_a_running_servers_framers_follow_its_tenants_origins(
    stack_settings: StackSettings, hub: httpx.AsyncClient, hub_token: str
) -> None:
    tenant_id = "f" + uuid.uuid4().hex[:8]
    key = admin(stack_settings, "create", tenant_id, "--origin", "https://one.example.test")[
        "api_key"
    ]
    await eventually(lambda: status_is(stack_settings, key, 200))
    hub_user = hub_username(tenant_id, "dora")
    async with client(stack_settings, key) as http:
        session = await open_session(http, user_id="dora", notebook_name="framed")
        try:
            assert session["status"] == "ready", session
            # This tenant's origin only: not the demo host's, though the hub allows it.
            assert await server_csp(stack_settings, hub_token, hub_user) == (
                "frame-ancestors 'self' https://one.example.test"
            )

            admin(stack_settings, "set-origins", tenant_id, "https://two.example.test")

            async def moved() -> bool:
                csp = await server_csp(stack_settings, hub_token, hub_user)
                return csp == "frame-ancestors 'self' https://two.example.test"

            await eventually(moved)  # the running server, no restart

            # The hub's pages about dora (after a cull, a spawn) follow too; the hub's
            # other pages no host may frame.
            async def hub_pages_moved() -> bool:
                return await hub_page_csp(stack_settings, f"spawn-pending/{hub_user}") == (
                    "frame-ancestors 'self' https://two.example.test"
                )

            await eventually(hub_pages_moved)
            for page in ("home", "token", f"spawn-pending/{hub_username('demo', 'x')}"):
                assert "two.example.test" not in await hub_page_csp(stack_settings, page)
            assert await hub_page_csp(stack_settings, "token") == "frame-ancestors 'self'"

            # The login answer carries the tenant's framers too.
            fresh = (await http.get(f"/v1/sessions/{session['id']}")).json()
            async with httpx.AsyncClient() as browser:
                login = await browser.get(fresh["iframe_url"], headers=IN_A_FRAME)
            assert login.status_code == 302, login.text
            assert login.headers["content-security-policy"] == (
                "frame-ancestors 'self' https://two.example.test"
            )
        finally:
            await hub.delete(f"/users/{hub_user}/server")
