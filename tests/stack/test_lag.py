"""``python -m infra lag``: every consumer group's backlog, read from the real broker."""

from __future__ import annotations

import asyncio
import sys

import httpx

from infra import lag
from infra.settings import REPO_ROOT, StackSettings
from tests.stack.helpers import eventually, open_session


async def test_lag_lists_every_group_and_drains_to_zero_after_work(
    stack_settings: StackSettings, gateway: httpx.AsyncClient
) -> None:
    session = await open_session(gateway, user_id="lag-check", notebook_name="lag")
    assert session["status"] == "ready", session

    async def caught_up() -> bool:
        rows = await lag.measure(stack_settings)
        return all(row.behind == 0 for row in rows if row.group == "nbembed-provisioner")

    # The provisioner handled the request, so its group has committed past it.
    await eventually(caught_up)

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra", "lag", cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    shown = output.decode()
    for group, topics in lag.groups().items():
        for topic in topics:
            assert any(line.split()[:2] == [group, topic] for line in shown.splitlines()), (
                group,
                topic,
            )
    await gateway.delete(f"/v1/sessions/{session['id']}")
