"""`down` leaves nothing behind: no process of the stack, no bound port.

It stops the very stack the run started, so it runs after every other test of
the run (the ``takes_the_stack_down`` marker): in ``make test`` that is after the
fault suite, with the servers of every earlier test still running. A stack that
was up before the run (``make up``) belongs to its developer and is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from infra import stack
from infra.settings import REPO_ROOT, StackSettings
from tests.stack.helpers import open_session

pytestmark = pytest.mark.takes_the_stack_down


def _run(command: str) -> subprocess.CompletedProcess[str]:
    """``python -m infra COMMAND`` as a user types it, with the run's environment."""
    return subprocess.run(
        [sys.executable, "-m", "infra", command],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_down_leaves_no_process_and_no_bound_port(
    stack_settings: StackSettings, stack_was_up: bool, gateway: httpx.AsyncClient
) -> None:
    if stack_was_up:
        pytest.skip("stops the stack: run it on a stack the tests start (`make down` first)")
    # A running single-user server is the likeliest orphan: make sure one runs.
    opened = await open_session(gateway, user_id="stopper", notebook_name="stop.ipynb")
    assert opened["status"] == "ready", opened
    assert stack.leftover_processes(stack_settings), "the running stack must be recognised"

    down = _run("down")

    assert down.returncode == 0, down.stdout + down.stderr
    # `down` reports anything it had to clean up itself: there must be nothing.
    assert down.stderr.strip() == "", down.stderr
    assert stack.leftover_processes(stack_settings) == []
    busy = [p for p in stack.stack_ports(stack_settings) if stack.port_in_use(p)]
    assert busy == []
