"""Account names of the local-users spawner and the state folder's modes (infra/)."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from infra import stack
from infra.hub import local_users
from infra.hub.local_users import MAX_ACCOUNT_LENGTH, account_name
from infra.settings import StackSettings

# useradd's default NAME_REGEX on Debian.
VALID_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]*[$]?$")


def test_account_names_are_valid_deterministic_and_distinct() -> None:
    hub_names = [
        "demo-vqrbv6bm3xqgcop7rvsjejnejn",
        "demo-vqrbv6bm3xqgcop7rvsjejnejm",  # differs in the last character only
        "a-very-long-tenant-identifier-beyond-thirty-two-characters-vqrbv6bm3xqgcop7",
        "Ünïcode tenant",
        "---",
    ]
    accounts = [account_name(name) for name in hub_names]
    for account in accounts:
        assert len(account) <= MAX_ACCOUNT_LENGTH
        assert VALID_ACCOUNT.match(account), account
    assert len(set(accounts)) == len(accounts)
    # A hub user created again gets the same account (and so the same files).
    assert [account_name(name) for name in hub_names] == accounts
    assert account_name("demo-vqrbv6bm3xqgcop7rvsjejnejn").startswith("nb-demo-")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_folder_is_closed_to_user_accounts_even_when_it_existed_open(
    tmp_path: Path,
) -> None:
    settings = StackSettings(state_dir=tmp_path / "run")
    state = settings.state_dir
    # A state folder left by an earlier version: everything world-readable.
    for folder in ("secrets", "logs", "hub", "kafka", "ferretdb", "homes/someone"):
        (state / folder).mkdir(parents=True, mode=0o755)
    for file in ("secrets/hub-service-token", "tenants.json", "supervisord.conf", "logs/x.log"):
        (state / file).write_text("x")
        (state / file).chmod(0o644)
    state.chmod(0o755)

    stack.lock_state_folder(settings)

    assert _mode(state) == _mode(state / "homes") == 0o711
    for folder in ("secrets", "logs", "hub", "kafka", "ferretdb"):
        assert _mode(state / folder) == 0o700, folder
    for file in ("secrets/hub-service-token", "tenants.json", "supervisord.conf"):
        assert _mode(state / file) == 0o600, file


def test_up_refuses_a_state_folder_the_accounts_cannot_reach(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    settings = StackSettings(state_dir=closed / "run", spawner_class="local-users")
    with pytest.raises(RuntimeError, match="closed to other accounts"):
        stack.check_homes_reachable(settings)
    # The simple spawner runs servers as the stack's account: nothing to check.
    stack.check_homes_reachable(settings.model_copy(update={"spawner_class": "simple"}))


def test_an_account_with_a_stale_home_is_moved_to_this_stacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another checkout made the account: its home must become this stack's."""
    ran: list[list[str]] = []
    monkeypatch.setattr(local_users, "_run_retrying", lambda command, *_: ran.append(command))
    entry = type("Entry", (), {"pw_dir": "/elsewhere/.run/homes/demo-x"})()
    monkeypatch.setattr(local_users.pwd, "getpwnam", lambda name: entry)
    home = tmp_path / "homes" / "demo-x"
    local_users.ensure_account("nb-demo-x", "nbembed-users", home, "c")
    assert ran[-1] == ["usermod", "--home", str(home), "nb-demo-x"]

    ran.clear()
    entry.pw_dir = str(home)  # type: ignore[attr-defined]
    local_users.ensure_account("nb-demo-x", "nbembed-users", home, "c")
    assert [command[0] for command in ran] == ["groupadd"]  # nothing else to change


def _child(seconds: float) -> subprocess.Popen[bytes]:
    """A process of ours, as the spawner's own server process is (a Popen)."""
    return subprocess.Popen(["sleep", str(seconds)])


async def test_the_spawner_notices_an_exited_server_and_gives_up_at_its_timeout() -> None:
    """``wait_for_death`` answers True once the process has exited, False at the timeout."""
    spawner = local_users.LocalUserSpawner()
    spawner.death_interval = 0.01
    spawner.proc = _child(0.2)
    spawner.pid = spawner.proc.pid
    assert await spawner.wait_for_death(timeout=30)
    assert spawner.proc.returncode == 0  # reaped

    spawner.proc = _child(30)
    spawner.pid = spawner.proc.pid
    try:
        assert not await spawner.wait_for_death(timeout=0.2)
    finally:
        spawner.proc.kill()
        spawner.proc.wait()


def test_a_port_held_by_a_server_is_never_handed_to_another() -> None:
    """Two spawns in a burst once got the same port from the OS; the hub then routed
    the second user to the first user's server."""
    offered = iter([54321, 54321, 54321, 40000, 54321])
    ports = local_users.ServerPorts()
    first = ports.take("alice/", lambda: next(offered))
    second = ports.take("bob/", lambda: next(offered))
    assert (first, second) == (54321, 40000)
    ports.release("alice/")  # alice's server stopped: its port is free again
    assert ports.take("carol/", lambda: next(offered)) == 54321


def test_a_server_started_again_gives_back_its_old_port() -> None:
    ports = local_users.ServerPorts()
    assert ports.take("alice/", lambda: 50000) == 50000
    assert ports.take("alice/", lambda: 50001) == 50001
    assert ports.take("bob/", lambda: 50000) == 50000


PROC_TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
)


def _row(address: str, port: int, state: str, uid: int) -> str:
    return f"   0: {address}:{port:04X} 00000000:0000 {state} 0:0 00:0 0 {uid} 0 1 1\n"


def test_listener_uids_names_the_owners_of_listening_sockets_on_the_port(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(
        PROC_TCP_HEADER
        + _row("0100007F", 40001, "0A", 1001)  # 127.0.0.1:40001, listening
        + _row("0100007F", 40001, "01", 1002)  # a connection from that port, not a listener
        + _row("0100007F", 40002, "0A", 1003)  # another port
    )
    (tmp_path / "tcp6").write_text(
        PROC_TCP_HEADER + _row("00000000000000000000000001000000", 40001, "0A", 1004)
    )
    assert local_users.listener_uids(40001, tmp_path) == {1001, 1004}
    assert local_users.listener_uids(40003, tmp_path) == set()


async def test_the_spawner_waits_for_its_own_listener_and_refuses_another() -> None:
    seen: list[set[int]] = [set(), set(), {1001}]

    def listeners(port: int) -> set[int]:
        return seen.pop(0) if len(seen) > 1 else seen[0]

    async def running() -> bool:
        return True

    await local_users.wait_for_own_listener(40001, 1001, running, 0, listeners)
    assert seen == [{1001}]  # it polled until the server listened

    with pytest.raises(local_users.PortTaken, match="uid \\[1002\\]"):
        await local_users.wait_for_own_listener(40001, 1001, running, 0, lambda _: {1002})
    with pytest.raises(local_users.PortTaken):  # even beside the server's own socket
        await local_users.wait_for_own_listener(40001, 1001, running, 0, lambda _: {1001, 1002})


async def test_the_spawner_stops_waiting_when_its_server_exited() -> None:
    async def exited() -> bool:
        return False

    await local_users.wait_for_own_listener(40001, 1001, exited, 0, lambda _: set())
