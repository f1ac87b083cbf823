"""`down` leaves nothing behind: no process of the stack, no bound port.

Runs a second, separate stack (its own ports and state folder) so the shared
stack the other tests use stays up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra import stack
from infra.settings import REPO_ROOT, StackSettings
from tests.stack.helpers import start_server_and_wait

SEPARATE_PORTS = {
    "KAFKA_PORT": 19092,
    "KAFKA_CONTROLLER_PORT": 19093,
    "MONGODB_PORT": 37017,
    "HUB_PORT": 18000,
    "HUB_API_PORT": 18081,
    "PROXY_API_PORT": 18001,
    "GATEWAY_PORT": 18080,
    "PROVISIONER_HEALTH_PORT": 18091,
    "SYNC_HEALTH_PORT": 18092,
    "DEMO_PORT": 18090,
    "REPLICA_PORTS_FROM": 18100,
}


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def state_base() -> Iterator[Path]:
    """A folder for the second stack's state that other accounts may traverse.

    pytest's ``tmp_path`` lies under ``/tmp/pytest-of-<user>`` (0700), which the
    servers' own accounts (local-users spawner) could not pass through.
    """
    base = Path(tempfile.mkdtemp(prefix="nbembed-stop-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


async def test_down_leaves_no_process_and_no_bound_port(state_base: Path) -> None:
    tmp_path = state_base
    env = {key: value for key, value in os.environ.items() if not key.startswith("NBEMBED_")}
    env |= {f"NBEMBED_STACK_{key}": str(port) for key, port in SEPARATE_PORTS.items()}
    env["NBEMBED_STACK_STATE_DIR"] = str(tmp_path / "state")
    env["NBEMBED_STACK_ALLOWED_ORIGINS"] = '["http://127.0.0.1:18090"]'
    # Its servers run as the stack's own account, outside the users' group: the
    # shared stack's egress filter (for that group, allowing only its own hub API
    # and gateway ports) would otherwise refuse them this stack's hub.
    env["NBEMBED_STACK_SPAWNER_CLASS"] = "simple"
    settings = StackSettings.model_validate(
        {
            "state_dir": tmp_path / "state",
            "spawner_class": "simple",
            **{k.lower(): v for k, v in SEPARATE_PORTS.items()},
        }
    )
    assert not [p for p in stack.stack_ports(settings) if stack.port_in_use(p)]

    try:
        up = _run("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert all((await stack.check_all(settings)).values())
        # A running single-user server is the likeliest orphan: start one.
        token = settings.service_token_file.read_text().strip()
        async with httpx.AsyncClient(
            base_url=f"{settings.public_hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=60,
        ) as hub:
            assert (await hub.post("/users/stopper")).status_code == 201
            await start_server_and_wait(hub, "stopper")
        assert stack.leftover_processes(settings), "the running stack must be recognised"
    finally:
        down = _run("down", env)

    assert down.returncode == 0, down.stdout + down.stderr
    # `down` reports anything it had to clean up itself: there must be nothing.
    assert down.stderr.strip() == "", down.stderr
    assert stack.leftover_processes(settings) == []
    assert [p for p in stack.stack_ports(settings) if stack.port_in_use(p)] == []
