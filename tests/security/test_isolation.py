"""Kernels do not share an OS account, and the hub gives a user nothing nbembed did not ask for.

Code runs in real kernels of two users of the real stack (alice and bob) and
tries what issue 7 found working: reading the stack's secrets, the other
user's home and the environment of the other user's server, planting a
server config in its own home, and, with the user's own hub session or a
token minted for the user, starting servers and minting tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from infra.settings import StackSettings
from tests.security.kernel import (
    SessionUser,
    run_in_kernel,
    session_users,
)
from tests.stack.helpers import IN_A_FRAME, SERVER_MODULE, start_server_and_wait

pytestmark = pytest.mark.stack

PROBE = """
import json, os
results = {}
for path in %r:
    try:
        if os.path.isdir(path):
            results[path] = sorted(os.listdir(path))
        else:
            with open(path, "rb") as f:
                results[path] = f.read().decode(errors="replace")
    except OSError as e:
        results[path] = "ERR:" + type(e).__name__
print(json.dumps(results))
"""


@dataclass(frozen=True)
class User(SessionUser):
    """A user with a ready session, and the home their OS account owns."""

    home: Path


@pytest.fixture(scope="module")
async def hub_api(running_stack: StackSettings, hub_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's REST API with the nbembed service token (module scope)."""
    async with httpx.AsyncClient(
        base_url=f"{running_stack.public_hub_url}/hub/api",
        headers={"Authorization": f"token {hub_token}"},
        timeout=90,
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def users(
    running_stack: StackSettings, api_key: str, hub_api: httpx.AsyncClient
) -> AsyncIterator[tuple[User, User]]:
    """alice and bob of the first demo tenant, each with a running server."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running_stack.gateway_port}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=120,
    ) as gateway:
        ready = await session_users(gateway, hub_api, "demo", ("alice", "bob"), "isolation")
    alice, bob = (
        User(**vars(user), home=running_stack.state_dir / "homes" / user.hub_user) for user in ready
    )
    yield alice, bob
    for user in (alice, bob):
        await hub_api.delete(f"/users/{user.hub_user}/server")


async def probe(settings: StackSettings, user: User, paths: list[str]) -> dict[str, object]:
    """What ``user``'s kernel gets when it lists or reads each path."""
    out = await run_in_kernel(settings.public_hub_url, user, PROBE % (paths,))
    result: dict[str, object] = json.loads(out)
    return result


async def test_kernels_run_as_distinct_unprivileged_accounts(
    running_stack: StackSettings, users: tuple[User, User]
) -> None:
    code = "import os; print(os.getuid(), os.getgid(), os.getgroups())"
    alice, bob = users
    alice_ids = (await run_in_kernel(running_stack.public_hub_url, alice, code)).split(maxsplit=1)
    bob_ids = (await run_in_kernel(running_stack.public_hub_url, bob, code)).split(maxsplit=1)
    assert alice_ids[0] != "0" and bob_ids[0] != "0"
    assert alice_ids[0] != bob_ids[0]
    assert "0" not in alice_ids[1].replace(",", " ").strip("[] \n").split()


async def test_a_kernel_reads_none_of_the_stacks_secrets_data_or_config(
    running_stack: StackSettings, users: tuple[User, User], hub_token: str
) -> None:
    state = running_stack.state_dir
    secrets = sorted(running_stack.secrets_dir.iterdir())
    assert secrets, "the stack has secrets to protect"
    private = [
        *secrets,
        running_stack.secrets_dir,
        state,
        state / "homes",
        state / "tenants.json",
        state / "supervisord.conf",
        state / "hub",
        state / "hub" / "jupyterhub.sqlite",
        state / "logs",
        *sorted(running_stack.logs_dir.iterdir()),
        state / "kafka",
        state / "ferretdb",
    ]
    assert all(path.exists() for path in private)
    alice, _ = users
    seen = await probe(running_stack, alice, [str(path) for path in private])
    readable = {path: value for path, value in seen.items() if value != "ERR:PermissionError"}
    assert readable == {}
    assert hub_token not in json.dumps(seen)


async def test_a_kernel_cannot_read_another_users_home(
    running_stack: StackSettings, users: tuple[User, User]
) -> None:
    alice, bob = users
    bobs_notebook = bob.home / bob.path
    assert bobs_notebook.is_file(), "bob's notebook is on disk"
    assert oct(bob.home.stat().st_mode & 0o777) == oct(0o700)
    seen = await probe(
        running_stack, alice, [str(bob.home), str(bobs_notebook), str(bob.home / "work")]
    )
    assert set(seen.values()) == {"ERR:PermissionError"}, seen


def server_process(user: User) -> psutil.Process:
    """``user``'s single-user server (its working folder is the user's home)."""
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if SERVER_MODULE in cmdline and proc.info["cwd"] == str(user.home):
            return proc
    raise AssertionError(f"no server process for {user.hub_user}")


async def test_a_kernel_cannot_read_another_servers_environment(
    running_stack: StackSettings, users: tuple[User, User]
) -> None:
    alice, bob = users
    bobs_server = server_process(bob)
    assert "JUPYTERHUB_API_TOKEN" in bobs_server.environ(), "the environment holds a token"
    seen = await probe(
        running_stack,
        alice,
        [f"/proc/{bobs_server.pid}/environ", f"/proc/{bobs_server.pid}/cwd"],
    )
    assert set(seen.values()) == {"ERR:PermissionError"}, seen


PLANT = """
import os, pathlib, sys
home = pathlib.Path.home()
(home / ".jupyter").mkdir(exist_ok=True)
(home / ".jupyter" / "jupyter_server_config.py").write_text(
    "open(%(config_marker)r, 'w').write('loaded')\\n"
)
site = home / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
(site / "site-packages").mkdir(parents=True, exist_ok=True)
(site / "site-packages" / "planted.pth").write_text(
    "import os; open(%(site_marker)r, 'w').write(str(os.getpid()))\\n"
)
print("planted")
"""


async def test_config_planted_by_a_kernel_is_ignored_after_the_server_restarts(
    running_stack: StackSettings, users: tuple[User, User], hub_api: httpx.AsyncClient
) -> None:
    alice, _ = users
    config_marker = alice.home / "user-config-loaded"
    site_marker = alice.home / "user-site-loaded"
    code = PLANT % {"config_marker": str(config_marker), "site_marker": str(site_marker)}
    assert "planted" in await run_in_kernel(running_stack.public_hub_url, alice, code)
    assert (alice.home / ".jupyter" / "jupyter_server_config.py").is_file()

    stopped = await hub_api.delete(f"/users/{alice.hub_user}/server")
    assert stopped.status_code in (202, 204), stopped.text
    await start_server_and_wait(hub_api, alice.hub_user)
    # A kernel of the restarted server: the server and the kernel both started.
    assert "ok" in await run_in_kernel(running_stack.public_hub_url, alice, "print('ok')")

    assert not config_marker.exists(), "the server loaded ~/.jupyter/jupyter_server_config.py"
    assert not site_marker.exists(), "a .pth in ~/.local site-packages was loaded"


async def test_the_hub_mints_a_user_no_token_beyond_reaching_its_own_server(
    users: tuple[User, User], hub_api: httpx.AsyncClient
) -> None:
    alice, bob = users
    name = alice.hub_user

    async def mint(scopes: list[str]) -> httpx.Response:
        return await hub_api.post(
            f"/users/{name}/tokens",
            json={"expires_in": 60, "scopes": scopes, "note": "nbembed isolation test"},
        )

    for scopes in (
        [f"tokens!user={name}"],
        [f"servers!user={name}"],
        [f"start:servers!user={name}"],
        [f"delete:servers!user={name}"],
        [f"read:users!user={name}"],
        [f"access:servers!user={bob.hub_user}"],
    ):
        refused = await mint(scopes)
        assert refused.status_code == 400, (scopes, refused.text)
        assert "not held by" in refused.json()["message"]
    # What nbembed does ask for still works: a token for the user's own server.
    for scopes in ([f"access:servers!server={name}/"], [f"access:servers!user={name}"]):
        assert (await mint(scopes)).status_code == 201, scopes

    # A token minted without scopes inherits the user's: still nothing beyond that.
    inherited = await hub_api.post(f"/users/{name}/tokens", json={"expires_in": 60})
    assert inherited.status_code == 201, inherited.text
    token = inherited.json()["token"]
    async with httpx.AsyncClient(
        base_url=str(hub_api.base_url), headers={"Authorization": f"token {token}"}, timeout=30
    ) as as_alice:
        assert (await as_alice.post(f"/users/{name}/tokens", json={})).status_code == 403
        assert (await as_alice.post(f"/users/{name}/server")).status_code == 403
        assert (await as_alice.delete(f"/users/{name}/server")).status_code == 403


async def test_a_logged_in_browser_cannot_start_servers_or_mint_tokens(
    running_stack: StackSettings,
    users: tuple[User, User],
    hub_api: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
) -> None:
    alice, _ = users
    name = alice.hub_user
    hub = f"{running_stack.public_hub_url}/hub"
    # Each read of a ready session hands out a fresh single-use iframe URL.
    iframe_url = (await gateway.get(f"/v1/sessions/{alice.session_id}")).json()["iframe_url"]
    async with httpx.AsyncClient(follow_redirects=True, timeout=60) as browser:
        opened = await browser.get(iframe_url, headers=IN_A_FRAME)
        assert opened.status_code == 200
        assert opened.url.path.startswith(f"/user/{name}/"), "the browser reached its server"
        for page in ("home", "token"):
            await browser.get(f"{hub}/{page}")  # sets the _xsrf cookie like a page load
        xsrf = next((c.value for c in browser.cookies.jar if c.name == "_xsrf"), None)
        assert xsrf, "the hub handed the browser its XSRF cookie"
        headers = {"X-XSRFToken": xsrf, "Referer": f"{hub}/token"}
        # The cookie and XSRF token are good: what the user role allows passes.
        activity = await browser.post(
            f"{hub}/api/users/{name}/activity",
            headers=headers,
            json={"last_activity": datetime.now(UTC).isoformat().replace("+00:00", "Z")},
        )
        assert activity.status_code == 200, activity.text

        token = await browser.post(
            f"{hub}/api/users/{name}/tokens", headers=headers, json={"note": "mine"}
        )
        assert token.status_code == 403, token.text
        stop = await browser.delete(f"{hub}/api/users/{name}/server", headers=headers)
        assert stop.status_code == 403, stop.text
        start = await browser.post(f"{hub}/api/users/{name}/server", headers=headers)
        assert start.status_code == 403, start.text
        spawn_page = await browser.get(f"{hub}/spawn/{name}")
        assert spawn_page.status_code == 403, spawn_page.status_code

    server = (await hub_api.get(f"/users/{name}")).json()["servers"][""]
    assert server["ready"], "the user's own server was left running"
