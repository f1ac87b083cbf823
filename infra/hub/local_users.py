"""Run each hub user's single-user server as its own OS account.

The local stack runs as root on development machines and CI. With JupyterHub's
``SimpleLocalProcessSpawner`` every kernel would run as root too, and read the
stack's secrets, the other users' homes and the environment of their servers.
`LocalUserSpawner` creates one unprivileged account per hub user on first start
(``useradd``: no login shell, locked password, the shared group
``nbembed-users`` rather than one group per user) and starts the server with
that uid, its home ``<state>/homes/<hub user>`` owned by it, mode 0700.

Account names are derived from the hub user name (`account_name`), so a hub
user deleted and created again gets the same account and the same files.
Accounts are never removed by the stack; the README says how to remove them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import random_port
from traitlets import Integer, Unicode

ACCOUNT_PREFIX = "nb-"
ADMIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
MAX_ACCOUNT_LENGTH = 32
"""Linux's limit on user names (``useradd`` refuses longer ones)."""

# useradd/groupadd exit codes worth a retry: 1 "cannot lock /etc/passwd" (another
# process holds the lock), 10 "cannot update group file".
_RETRYABLE_EXIT_CODES = frozenset({1, 10})


def account_name(hub_user: str) -> str:
    """The OS account of ``hub_user``: deterministic, unique, a valid Linux user name.

    A readable slug of the hub name (ops can tell whose processes they see) and
    16 hex digits of its SHA-256 (two hub names never share an account, whatever
    their length), at most 30 characters.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", hub_user.lower()).strip("-")[:10].rstrip("-")
    digest = hashlib.sha256(hub_user.encode()).hexdigest()[:16]
    name = f"{ACCOUNT_PREFIX}{slug}-{digest}" if slug else f"{ACCOUNT_PREFIX}{digest}"
    assert len(name) <= MAX_ACCOUNT_LENGTH
    return name


class AccountError(RuntimeError):
    """``useradd`` or ``groupadd`` failed for a reason a retry does not fix."""


def _run_retrying(command: list[str], attempts: int, ok_codes: frozenset[int]) -> None:
    """Run ``command``; retry with a short backoff while the account files are locked."""
    # The hub's PATH (set by the stack) has no sbin folders.
    program = shutil.which(command[0], path=ADMIN_PATH)
    if program is None:
        raise AccountError(f"{command[0]} not found in {ADMIN_PATH} (Debian package passwd)")
    for attempt in range(attempts):
        done = subprocess.run([program, *command[1:]], capture_output=True, text=True, check=False)
        if done.returncode == 0 or done.returncode in ok_codes:
            return
        if done.returncode not in _RETRYABLE_EXIT_CODES or attempt == attempts - 1:
            raise AccountError(f"{command[0]} exited {done.returncode}: {done.stderr.strip()}")
        time.sleep(0.1 * 2**attempt)


def ensure_account(account: str, group: str, home: Path, comment: str, attempts: int = 6) -> None:
    """Create ``group`` and ``account`` unless they exist (blocking; call in a thread).

    An account that exists with another home (made by a stack whose state folder
    was elsewhere: another checkout on this machine) is moved to ``home``: the
    server starts in the account's home as ``/etc/passwd`` says, and a stale one
    leaves it in a folder it cannot write.
    """
    # groupadd --force: success when the group exists already.
    _run_retrying(["groupadd", "--force", group], attempts, frozenset())
    try:
        existing = pwd.getpwnam(account)
    except KeyError:
        existing = None
    if existing is not None:
        if existing.pw_dir != str(home):
            # 8: a process of the account still runs; usermod then leaves it as it was.
            _run_retrying(["usermod", "--home", str(home), account], attempts, frozenset({8}))
        return
    _run_retrying(
        [
            "useradd",
            "--home-dir",
            str(home),
            "--no-create-home",  # made by `ensure_home`, under the stack's state folder
            "--gid",
            group,
            "--no-user-group",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            comment,
            account,
        ],
        attempts,
        frozenset({9}),  # 9: the name exists (created meanwhile by someone else)
    )
    pwd.getpwnam(account)  # raises KeyError if it still does not exist


def ensure_home(home: Path, uid: int, gid: int) -> None:
    """``home`` exists, belongs to ``uid``, mode 0700.

    A home left by the simple spawner (owned by root) is handed over whole, without
    following symbolic links; a home the account already owns is left as it is.
    """
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.lstat().st_uid != uid:
        for folder, dirs, files in os.walk(home):
            for name in (*dirs, *files):
                os.chown(Path(folder) / name, uid, gid, follow_symlinks=False)
        os.chown(home, uid, gid, follow_symlinks=False)
    home.chmod(0o700)


def ensure_runtime_dir(path: Path, uid: int, gid: int) -> None:
    """``path`` exists, belongs to ``uid``, mode 0700; its parent belongs to root, mode 0755.

    The server's kernels talk to it over Unix sockets in this folder rather than
    TCP on loopback (which the egress filter closes to these accounts, see
    infra/egress.py): only the account may enter it, and no account can plant a
    link in the parent.
    """
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if parent.lstat().st_uid != os.geteuid():
        raise AccountError(f"{parent} belongs to another account; refusing to use it")
    parent.chmod(0o755)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True, mode=0o700)
    os.chown(path, uid, gid, follow_symlinks=False)
    path.chmod(0o700)


class ServerPorts:
    """The loopback ports handed to this hub's servers, one per server, until it stops.

    ``random_port()`` asks the OS for a port free now, but the server binds it
    seconds later. In a burst of 100 new users two spawns got the same port: the
    second server exited ("port is not available"), yet the hub's readiness check
    had already reached the first user's server on it, so the hub routed the second
    user's URL to the first user's server (which refused the second user's token:
    the session failed, nothing leaked). A port taken here is never handed out
    again while its server may still start or run.
    """

    def __init__(self) -> None:
        self._owners: dict[int, str] = {}

    def take(self, owner: str, free_port: Callable[[], int] = random_port) -> int:
        """A free port no other server of this hub holds; ``owner``'s earlier one is freed."""
        self.release(owner)
        while (port := free_port()) in self._owners:
            pass
        self._owners[port] = owner
        return port

    def release(self, owner: str) -> None:
        """``owner``'s server stopped (or never started): its port may be handed out again."""
        for port in [port for port, held_by in self._owners.items() if held_by == owner]:
            del self._owners[port]


TCP_LISTEN = "0A"
"""A socket's state in ``/proc/net/tcp``: listening."""

REACHING_LOOPBACK = {
    "tcp": {"0100007F", "00000000"},  # 127.0.0.1, 0.0.0.0
    "tcp6": {"0" * 32, "0000000000000000FFFF00000100007F"},  # ::, ::ffff:127.0.0.1
}
"""Local addresses, as ``/proc/net`` prints them, whose listeners take connections to
127.0.0.1: where the hub and the proxy reach every server (``Spawner.ip``)."""


def listener_uids(port: int, proc_net: Path = Path("/proc/net")) -> set[int]:
    """The uids owning a TCP socket that listens on ``port`` and takes 127.0.0.1's connections.

    ``/proc/net/tcp`` and ``tcp6`` are readable by every account and name each
    socket's owner, so the hub learns who listens without privileges. A listener
    on another address (``::1``, ``127.0.0.2``) is never reached for a server.
    """
    uids: set[int] = set()
    for table, addresses in REACHING_LOOPBACK.items():
        try:
            rows = (proc_net / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            if table == "tcp6":  # a kernel without IPv6
                continue
            raise
        for row in rows:
            fields = row.split()
            address, port_hex = fields[1].split(":")
            state, uid = fields[3], fields[7]
            if state == TCP_LISTEN and address in addresses and int(port_hex, 16) == port:
                uids.add(int(uid))
    return uids


class PortTaken(RuntimeError):
    """Another account listens on the port chosen for a server: the hub must not route to it."""


class ExitedBeforeListening(RuntimeError):
    """The server exited before it listened on its port."""


async def wait_for_own_listener(
    port: int,
    uid: int,
    running: Callable[[], Awaitable[bool]],
    interval: float = 0.05,
    listeners: Callable[[int], set[int]] | None = None,
) -> None:
    """Return once ``uid`` alone listens on ``port``; raise if another uid does, or it exited.

    The hub takes whatever answers HTTP on a server's port for that server. A
    user's kernel may listen on loopback too: one that bound the port chosen
    for another user's server first would have that user's browser, cookies
    included, routed to it. Once the server's account listens on 127.0.0.1,
    Linux lets no other account listen there or on the wildcard on that port
    (``SO_REUSEPORT`` requires the same uid), so the port stays the server's.
    Whether it still runs is asked before the listeners are read: a server
    that exited then is not mistaken for one a squatter never raced.
    Checks back off from ``interval`` to 0.25 s (a burst of starts each poll).
    """
    while True:
        alive = await running()
        owners = await asyncio.to_thread(listeners or listener_uids, port)
        if owners - {uid}:
            raise PortTaken(f"port {port} is listened on by uid {sorted(owners - {uid})}")
        if uid in owners:
            return
        if not alive:
            raise ExitedBeforeListening(f"the server exited before it listened on port {port}")
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.25)


class LocalUserSpawner(LocalProcessSpawner):  # type: ignore[misc]
    """A local process per hub user, each as its own OS account (created on first start)."""

    homes_dir = Unicode(help="Folder of the hub users' homes: <homes_dir>/<hub user name>.").tag(
        config=True
    )
    group = Unicode(
        "nbembed-users", help="Primary group shared by every account; no group per user."
    ).tag(config=True)
    runtime_root = Unicode(
        "/run/nbembed",
        help="Folder of the accounts' Jupyter runtime folders (<runtime_root>/<account>, 0700): "
        "connection files and the kernels' IPC sockets, whose paths must stay under 107 bytes.",
    ).tag(config=True)
    account_attempts = Integer(
        6, help="Attempts at useradd while /etc/passwd is locked by another process."
    ).tag(config=True)

    # One useradd at a time from this hub: concurrent spawns would otherwise
    # contend for /etc/passwd's lock (and fail with "cannot lock").
    _accounts_lock: ClassVar[asyncio.Lock | None] = None
    # Every server's port is chosen here, never reused while its server may run.
    _ports: ClassVar[ServerPorts] = ServerPorts()

    @property
    def _server_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    @property
    def account(self) -> str:
        return account_name(self.user.name)

    @property
    def home(self) -> Path:
        return Path(str(self.homes_dir)) / str(self.user.name)

    @property
    def runtime_dir(self) -> Path:
        return Path(str(self.runtime_root)) / self.account

    @classmethod
    def _lock(cls) -> asyncio.Lock:
        if cls._accounts_lock is None:
            cls._accounts_lock = asyncio.Lock()
        return cls._accounts_lock

    async def _prepare_account(self) -> None:
        async with self._lock():
            await asyncio.to_thread(
                ensure_account,
                self.account,
                self.group,
                self.home,
                f"nbembed hub user {self.user.name}",
                self.account_attempts,
            )
        entry = pwd.getpwnam(self.account)
        await asyncio.to_thread(ensure_home, self.home, entry.pw_uid, entry.pw_gid)
        await asyncio.to_thread(ensure_runtime_dir, self.runtime_dir, entry.pw_uid, entry.pw_gid)

    async def start(self) -> Any:
        await self._prepare_account()
        # Chosen at every start (the base class keeps a port it chose once).
        self.port = self._ports.take(self._server_key)
        try:
            address = await super().start()
            await wait_for_own_listener(self.port, pwd.getpwnam(self.account).pw_uid, self._running)
            return address
        except BaseException as exc:
            if isinstance(exc, PortTaken):
                self.log.error(
                    "refusing %s's server: another account listens on its port", self.user.name
                )
            # The hub then stops the server if it runs and revokes its token.
            self._ports.release(self._server_key)
            raise

    async def _running(self) -> bool:
        # Popen's own poll: the base class's clears the state, the server's API
        # token included, which the hub's cleanup of a failed start then cannot revoke.
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._ports.release(self._server_key)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        # The base class passes the hub user name; the server runs as its account.
        preexec: Callable[[], None] = set_user_setuid(self.account)
        return preexec

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = self.account
        env["HOME"] = str(self.home)
        # The account has no login shell; terminals still need a shell.
        env["SHELL"] = "/bin/bash"
        # Connection files and IPC sockets of the kernels (KernelManager.transport=ipc).
        env["JUPYTER_RUNTIME_DIR"] = str(self.runtime_dir)
        return env

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        # internal_ssl is off on the local stack; nothing to hand over.
        return paths

    async def wait_for_death(self, timeout: float = 10) -> bool:
        """Check every ``death_interval`` (0.1 s) whether the server has exited.

        The base class backs off exponentially, up to 5 s between checks, so a
        server that exits after 1 s was noticed up to 4 s late, and every session
        end waits for the hub to notice. A check of our own child is one waitpid.
        """
        deadline = time.monotonic() + timeout
        while await self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.death_interval)
        return True
