"""A kernel reaches the hub API and the gateway, with its user's own token, and nothing else.

Code in a real kernel of alice's real server tries every listener of the stack
(Kafka's two listeners, FerretDB, the proxy's API and public port, the
provisioner's and sync's internal APIs, the demo page), every listening port
of bob's server and kernels, listeners this test opens on IPv4 and IPv6
loopback (TCP and UDP), the outside world, and every Unix socket of the stack
and of bob's kernels. Then it uses the one credential it has, its server's hub
token, against the two doors left open: the hub API and the gateway answer it
only for what alice's token allows.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from infra import egress
from infra.hub.local_users import account_name
from infra.settings import StackSettings
from schemas.login_ticket import REDEEM_PATH
from tests.security.kernel import Kernel, SessionUser, run_in_kernel, session_users

pytestmark = pytest.mark.stack

OUTSIDE = [("outside IPv4", "1.1.1.1", 443), ("outside IPv6", "2606:4700:4700::1111", 443)]
"""Public addresses: without the filter a connection times out or is made, never refused."""

CONNECT = """
import json, socket
results = {}
for name, host, port in %r:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect((host, port))
            results[name] = "connected"
        except OSError as e:
            results[name] = type(e).__name__
for name, path in %r:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect(path)
            results[name] = "connected"
        except OSError as e:
            results[name] = type(e).__name__
for name, host, port in %r:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"leak", (host, port))
            results[name] = "sent"
        except OSError as e:
            results[name] = type(e).__name__
print(json.dumps(results))
"""

DOORS = """
import json, os, httpx
token = os.environ.get("JUPYTERHUB_API_TOKEN")
if not token:  # the kernel shares the server's account: its environment is readable
    env = open(f"/proc/{os.getppid()}/environ", "rb").read().split(b"\\0")
    token = dict(v.decode().split("=", 1) for v in env if b"=" in v)["JUPYTERHUB_API_TOKEN"]
hub = httpx.Client(base_url=%(hub)r, headers={"Authorization": f"token {token}"}, timeout=20)
gw = httpx.Client(base_url=%(gateway)r, timeout=20)
me, other = %(me)r, %(other)r
calls = {
    "hub whoami": lambda: hub.get("/user"),
    "hub read other user": lambda: hub.get(f"/users/{other}"),
    "hub list users": lambda: hub.get("/users"),
    "hub mint own token": lambda: hub.post(f"/users/{me}/tokens", json={"expires_in": 60}),
    "hub start own server": lambda: hub.post(f"/users/{me}/server"),
    "hub stop other server": lambda: hub.delete(f"/users/{other}/server"),
    "gateway own save": lambda: gw.post(
        "/internal/server-saves", json={"path": %(my_path)r},
        headers={"Authorization": f"token {token}"}),
    "gateway other's file": lambda: gw.post(
        "/internal/server-saves", json={"path": %(other_path)r},
        headers={"Authorization": f"token {token}"}),
    "gateway tenant session": lambda: gw.get(
        "/v1/sessions/" + %(session)r, headers={"Authorization": f"Bearer {token}"}),
    "gateway tenant notebooks": lambda: gw.get(
        "/v1/notebooks", headers={"Authorization": f"Bearer {token}"}),
    "gateway redeem ticket": lambda: gw.post(
        %(redeem)r, json={"ticket": "x"}, headers={"Authorization": f"Bearer {token}"}),
}
out = {}
for name, call in calls.items():
    r = call()
    out[name] = [r.status_code, r.text[:2000]]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
async def users(
    running_stack: StackSettings, api_key: str, hub_token: str
) -> AsyncIterator[tuple[SessionUser, SessionUser]]:
    """alice and bob of the first demo tenant, each with a ready session and running server."""
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{running_stack.gateway_port}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=120,
        ) as gateway,
        httpx.AsyncClient(
            base_url=f"{running_stack.public_hub_url}/hub/api",
            headers={"Authorization": f"token {hub_token}"},
            timeout=90,
        ) as hub,
    ):
        alice, bob = await session_users(gateway, hub, "demo", ("alice", "bob"), "egress")
        yield alice, bob
        for user in (alice, bob):
            await hub.delete(f"/users/{user.hub_user}/server")


def listening_ports(account: str) -> set[int]:
    """TCP ports the processes of ``account`` (a user's server and kernels) listen on."""
    ports = set()
    for proc in psutil.process_iter(["username"]):
        if proc.info["username"] != account:
            continue
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return ports


def unix_sockets(*folders: Path) -> list[Path]:
    """Every Unix socket under ``folders`` (seen as root)."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_symlink() and stat.S_ISSOCK(path.lstat().st_mode):
                found.append(path)
    return found


@dataclass
class Listeners:
    """Listeners this test opens, and what reached them."""

    tcp4: int
    tcp6: int
    udp4: int
    udp6: int
    reached: list[str]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, reached: list[str], name: str) -> None:
        self.reached, self.name = reached, name

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.reached.append(self.name)


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    """Arbitrary loopback listeners (IPv4 and IPv6, TCP and UDP) of another account (root)."""
    reached: list[str] = []
    loop = asyncio.get_running_loop()

    def on_connect(name: str) -> object:
        async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            reached.append(name)
            writer.close()

        return handle

    tcp4 = await asyncio.start_server(on_connect("tcp4"), "127.0.0.1", 0)
    tcp6 = await asyncio.start_server(on_connect("tcp6"), "::1", 0)
    udp4, _ = await loop.create_datagram_endpoint(
        lambda: _Datagrams(reached, "udp4"), local_addr=("127.0.0.1", 0)
    )
    udp6, _ = await loop.create_datagram_endpoint(
        lambda: _Datagrams(reached, "udp6"), local_addr=("::1", 0), family=socket.AF_INET6
    )
    yield Listeners(
        tcp4=tcp4.sockets[0].getsockname()[1],
        tcp6=tcp6.sockets[0].getsockname()[1],
        udp4=udp4.get_extra_info("sockname")[1],
        udp6=udp6.get_extra_info("sockname")[1],
        reached=reached,
    )
    for server in (tcp4, tcp6):
        server.close()
    for transport in (udp4, udp6):
        transport.close()


@pytest.fixture
def filter_loaded(running_stack: StackSettings) -> None:
    assert egress.wanted(running_stack), "the stack runs the local-users spawner with the filter"
    assert egress.active(egress.table_of(running_stack)), "the stack's nftables table is loaded"


@pytest.mark.usefixtures("filter_loaded")
async def test_a_kernel_reaches_no_listener_but_the_hub_api_and_the_gateway(
    running_stack: StackSettings, users: tuple[SessionUser, SessionUser], listeners: Listeners
) -> None:
    alice, bob = users
    s = running_stack
    async with Kernel(s.public_hub_url, bob.hub_user, bob.token) as bobs_kernel:
        assert "ok" in (await bobs_kernel.run("print('ok')")).stdout
        seen = await _probe_from_alice(s, alice, bob, listeners)
    # Datagrams that got through have arrived by now.
    await asyncio.sleep(0.5)
    assert listeners.reached == []
    assert {name: result for name, result in seen.items() if result not in REFUSED} == {}


REFUSED = ("ConnectionRefusedError", "PermissionError")
"""What a refused attempt raises: a TCP reset, a socket closed by its folder's mode, a
datagram dropped before it left (``sendto`` fails with EPERM)."""


async def _probe_from_alice(
    s: StackSettings, alice: SessionUser, bob: SessionUser, listeners: Listeners
) -> dict[str, str]:
    """What alice's kernel gets for every destination; asserts each one exists first."""
    bobs_ports = listening_ports(account_name(bob.hub_user))
    assert bobs_ports, "bob's server listens on a port"
    tcp = [
        ("kafka", "127.0.0.1", s.kafka_port),
        ("kafka controller", "127.0.0.1", s.kafka_controller_port),
        ("ferretdb", "127.0.0.1", s.mongodb_port),
        ("proxy API", "127.0.0.1", s.proxy_api_port),
        ("proxy public port", "127.0.0.1", s.hub_port),
        ("provisioner internal API", "127.0.0.1", s.provisioner_health_port),
        ("sync internal API", "127.0.0.1", s.sync_health_port),
        ("demo host page", "127.0.0.1", s.demo_port),
        ("test listener IPv4", "127.0.0.1", listeners.tcp4),
        ("test listener IPv6", "::1", listeners.tcp6),
        *[(f"bob's port {port}", "127.0.0.1", port) for port in sorted(bobs_ports)],
        *OUTSIDE,
    ]
    for _name, host, port in tcp[:8]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.settimeout(2)
            assert probe.connect_ex((host, port)) == 0, f"{port} listens (as seen by root)"
    # The stack's Unix sockets (PostgreSQL's, supervisord's) and bob's kernels' IPC sockets.
    bobs_runtime = s.kernel_runtime_root / account_name(bob.hub_user)
    unix = unix_sockets(s.state_dir, bobs_runtime)
    assert any(".s.PGSQL" in path.name for path in unix), "PostgreSQL's socket exists"
    assert any(path.is_relative_to(bobs_runtime) for path in unix), "bob's kernels use IPC"
    udp = [
        ("udp test listener IPv4", "127.0.0.1", listeners.udp4),
        ("udp test listener IPv6", "::1", listeners.udp6),
        ("udp DNS outside", "1.1.1.1", 53),
    ]
    code = CONNECT % (tcp, [(str(path), str(path)) for path in unix], udp)
    seen: dict[str, str] = json.loads(await run_in_kernel(s.public_hub_url, alice, code))
    expected = {name for name, *_ in (*tcp, *udp)} | {str(path) for path in unix}
    assert set(seen) == expected
    for path in unix:
        assert seen[str(path)] == "PermissionError", path
    return seen


@pytest.mark.usefixtures("filter_loaded")
async def test_the_hub_and_the_gateway_answer_a_kernel_only_for_its_own_user(
    running_stack: StackSettings, users: tuple[SessionUser, SessionUser]
) -> None:
    alice, bob = users
    s = running_stack
    code = DOORS % {
        "hub": f"http://127.0.0.1:{s.hub_api_port}/hub/api",
        "gateway": f"http://127.0.0.1:{s.gateway_port}",
        "me": alice.hub_user,
        "other": bob.hub_user,
        "my_path": alice.path,
        "other_path": bob.path,
        "session": alice.session_id,
        "redeem": REDEEM_PATH,
    }
    answers = json.loads(await run_in_kernel(s.public_hub_url, alice, code))
    seen = {name: status for name, (status, _body) in answers.items()}
    assert json.loads(answers["hub whoami"][1])["name"] == alice.hub_user

    # The doors are open for what the server needs: who it is, its own save reports.
    assert seen.pop("hub whoami") == 200
    assert seen.pop("gateway own save") == 202
    # The hub refuses everything else the token does not allow.
    assert seen.pop("hub read other user") in (403, 404)
    assert seen.pop("hub list users") == 403
    assert seen.pop("hub mint own token") == 403
    assert seen.pop("hub start own server") == 403
    assert seen.pop("hub stop other server") in (403, 404)
    # The gateway: no other user's file, no tenant API, no ticket redemption.
    assert seen.pop("gateway other's file") == 404
    assert seen.pop("gateway tenant session") == 401
    assert seen.pop("gateway tenant notebooks") == 401
    assert seen.pop("gateway redeem ticket") == 401
    assert seen == {}
