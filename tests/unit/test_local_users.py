"""Account names of the local-users spawner and the state folder's modes (infra/)."""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Iterator
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


PROC_TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when uid\n"


def _row(address: str, port: int, state: str, uid: int) -> str:
    return f"   0: {address}:{port:04X} 00000000:0000 {state} 0:0 00:0 0 {uid} 0 1 1\n"


def test_listener_uids_names_who_listens_where_the_hub_connects(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(
        PROC_TCP_HEADER
        + _row("0100007F", 40001, "0A", 1001)  # 127.0.0.1:40001, listening
        + _row("0100007F", 40001, "01", 1002)  # a connection from that port, not a listener
        + _row("0200007F", 40001, "0A", 1003)  # 127.0.0.2: the hub never connects there
        + _row("00000000", 40002, "0A", 1004)  # 0.0.0.0, another port
    )
    (tmp_path / "tcp6").write_text(
        PROC_TCP_HEADER
        + _row("0" * 32, 40001, "0A", 1005)  # ::, which takes IPv4 connections too
        + _row("0000000000000000FFFF00000100007F", 40001, "0A", 1006)  # ::ffff:127.0.0.1
        + _row("00000000000000000000000001000000", 40001, "0A", 1007)  # ::1
    )
    assert local_users.listener_uids(40001, tmp_path) == {1001, 1005, 1006}
    assert local_users.listener_uids(40002, tmp_path) == {1004}
    assert local_users.listener_uids(40003, tmp_path) == set()

    (tmp_path / "tcp6").unlink()  # a kernel without IPv6
    assert local_users.listener_uids(40001, tmp_path) == {1001}
    (tmp_path / "tcp").unlink()  # no table at all: never "nobody listens"
    with pytest.raises(FileNotFoundError):
        local_users.listener_uids(40001, tmp_path)


async def _alive() -> bool:
    return True


async def _exited() -> bool:
    return False


async def test_the_spawner_waits_for_its_own_listener_and_refuses_another() -> None:
    seen: list[set[int]] = [set(), set(), {1001}]

    def listeners(port: int) -> set[int]:
        return seen.pop(0) if len(seen) > 1 else seen[0]

    await local_users.wait_for_own_listener(40001, 1001, _alive, 0, listeners)
    assert seen == [{1001}]  # it polled until the server listened

    with pytest.raises(local_users.PortTaken, match="uid \\[1002\\]"):
        await local_users.wait_for_own_listener(40001, 1001, _alive, 0, lambda _: {1002})
    with pytest.raises(local_users.PortTaken):  # even beside the server's own socket
        await local_users.wait_for_own_listener(40001, 1001, _alive, 0, lambda _: {1001, 1002})


async def test_a_server_that_exits_before_listening_is_a_failed_start() -> None:
    with pytest.raises(local_users.ExitedBeforeListening):
        await local_users.wait_for_own_listener(40001, 1001, _exited, 0, lambda _: set())
    # A squatter seen as the server exits is named as such.
    with pytest.raises(local_users.PortTaken):
        await local_users.wait_for_own_listener(40001, 1001, _exited, 0, lambda _: {1002})


class _HubUser:
    name = "alice"
    url = "/user/alice/"


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing for the server the base class started, still running."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


async def test_a_start_on_a_port_another_account_listens_on_fails_and_frees_the_port(
    monkeypatch: pytest.MonkeyPatch, server: subprocess.Popen[bytes]
) -> None:
    spawner = local_users.LocalUserSpawner(user=_HubUser())
    spawner.api_token = "the server's token"

    async def started(self: local_users.LocalUserSpawner) -> tuple[str, int]:
        self.proc = server
        return "127.0.0.1", self.port

    async def prepared() -> None:
        return None

    monkeypatch.setattr(local_users.LocalProcessSpawner, "start", started)
    monkeypatch.setattr(spawner, "_prepare_account", prepared)
    monkeypatch.setattr(local_users.pwd, "getpwnam", lambda _: type("E", (), {"pw_uid": 1001}))
    try:
        monkeypatch.setattr(local_users, "listener_uids", lambda port: {2002})
        with pytest.raises(local_users.PortTaken):
            await spawner.start()
        assert spawner.port not in local_users.LocalUserSpawner._ports._owners
        # Left for the hub's cleanup of the failed start, which revokes it.
        assert spawner.api_token == "the server's token"

        monkeypatch.setattr(local_users, "listener_uids", lambda port: {1001})
        assert await spawner.start() == ("127.0.0.1", spawner.port)
        assert local_users.LocalUserSpawner._ports._owners[spawner.port] == "alice/"
    finally:
        local_users.LocalUserSpawner._ports.release("alice/")
