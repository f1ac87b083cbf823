"""Faults on the stack's own programs, by PID, through its supervisord.

Every signal goes to a process that this stack's supervisord reports for one of
its programs (never a process found by name), and every fault is undone in a
``finally``: a stopped program is started again, a paused one continued, so a
failing test never leaves the stack broken for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import xmlrpc.client
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psutil
from supervisor.xmlrpc import SupervisorTransport

from infra import stack, supervisor
from infra.settings import StackSettings

FAULTABLE = ("gateway", "provisioner", "sync", "jupyterhub", "ferretdb")
"""The programs these tests may signal: the services (any replica), the hub, the store."""


def _rpc(settings: StackSettings) -> Any:
    socket = settings.state_dir / "supervisor.sock"
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def program_pid(settings: StackSettings, name: str) -> int:
    """The PID of the stack's program ``name``, checked to be a child of its supervisord."""
    if name not in (*FAULTABLE, *stack.all_service_programs(settings)):
        raise ValueError(f"{name} is not a program the fault tests may touch")
    daemon = supervisor.pid(settings)
    if daemon is None:
        raise RuntimeError("the stack's supervisord does not run")
    info = _rpc(settings).supervisor.getProcessInfo(name)
    if info["statename"] != "RUNNING" or not info["pid"]:
        raise RuntimeError(f"{name} is not running: {info['statename']}")
    pid = int(info["pid"])
    if psutil.Process(pid).ppid() != daemon:
        raise RuntimeError(f"pid {pid} is not a child of this stack's supervisord")
    return pid


async def wait_ready(settings: StackSettings, name: str, timeout: float = 60) -> None:
    """Wait until ``name`` runs under supervisord and answers its readiness check."""
    checks = stack._service_checks(settings)
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(RuntimeError, psutil.Error, OSError):
                program_pid(settings, name)
                if name in checks and await checks[name]():
                    return
                if name == "jupyterhub" and await hub_answers(settings):
                    return
            await asyncio.sleep(0.2)


async def hub_answers(settings: StackSettings) -> bool:
    token = settings.service_token_file.read_text().strip()
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            response = await http.get(
                f"{settings.public_hub_url}/hub/api/user",
                headers={"Authorization": f"token {token}"},
            )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def sigkill(settings: StackSettings, name: str) -> float:
    """SIGKILL ``name`` and wait until supervisord has it running and ready again.

    Returns the seconds from the kill until the new process answered. The
    stack's supervisord restarts a program that exits unexpectedly
    (``autorestart=true``), as Kubernetes restarts a killed container.
    """
    pid = program_pid(settings, name)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(RuntimeError, psutil.Error, OSError):
                if program_pid(settings, name) != pid:
                    break
            await asyncio.sleep(0.1)
    await wait_ready(settings, name)
    return time.monotonic() - killed_at


async def restart(settings: StackSettings, name: str) -> float:
    """Restart ``name`` gracefully (SIGTERM, as a rolling deploy does) and wait until ready.

    Returns the seconds from the stop request until the new process answered.
    """
    program_pid(settings, name)
    started = time.monotonic()
    await asyncio.to_thread(supervisor.ctl, settings, "restart", name)
    await wait_ready(settings, name)
    return time.monotonic() - started


STOPS = {"SIGKILL": sigkill, "SIGTERM": restart}
"""How a test may take a service away: killed, or restarted gracefully."""


@contextlib.asynccontextmanager
async def stopped(settings: StackSettings, name: str) -> AsyncIterator[None]:
    """``name`` stopped through supervisord for the block, started again (and ready) after."""
    program_pid(settings, name)  # refuses anything that is not ours and running
    await asyncio.to_thread(supervisor.ctl, settings, "stop", name)
    try:
        yield
    finally:
        await asyncio.to_thread(supervisor.ctl, settings, "start", name)
        await wait_ready(settings, name, timeout=120)


@contextlib.asynccontextmanager
async def paused(settings: StackSettings, name: str) -> AsyncIterator[None]:
    """``name`` frozen (SIGSTOP) for the block: its sockets accept, nothing answers."""
    pid = program_pid(settings, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def paused_process(pid: int, settings: StackSettings) -> AsyncIterator[None]:
    """A process of this stack (e.g. one user's server) frozen for the block."""
    if not _belongs_to_stack(pid, settings):
        raise RuntimeError(f"pid {pid} is not a process of this stack")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _belongs_to_stack(pid: int, settings: StackSettings) -> bool:
    daemon = supervisor.pid(settings)
    return daemon is not None and any(p.pid == daemon for p in psutil.Process(pid).parents())


def singleuser_pid(settings: StackSettings, hub_user: str) -> int:
    """The PID of ``hub_user``'s single-user server (a child of the stack's hub)."""
    hub = psutil.Process(program_pid(settings, "jupyterhub"))
    for child in hub.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.environ().get("JUPYTERHUB_USER") == hub_user:
                return int(child.pid)
    raise LookupError(f"no server process for {hub_user}")


async def measure(label: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` and print how long it took (the figures the README's table quotes)."""
    started = time.monotonic()
    try:
        return await work()
    finally:
        print(f"[faults] {label}: {time.monotonic() - started:.1f} s")
