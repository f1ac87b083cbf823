"""The single-user servers' launcher (infra/hub/singleuser_python/nbembed_singleuser.py).

Run in subprocesses: the launcher changes ``sys.modules`` and ends its process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER_PATH = Path(__file__).resolve().parents[2] / "infra" / "hub" / "singleuser_python"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SERVER_PATH)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_server_entry_point_loads_without_the_hubs_database_layer() -> None:
    """JupyterHub's single-user code still imports; Alembic and the ORM stay out."""
    done = _python(
        "import sys, nbembed_singleuser as launcher\n"
        "launcher._stand_in_for_hub_only_modules()\n"
        "from jupyterhub.singleuser import main\n"
        "from jupyterhub.log import log_request\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', 'sqlalchemy.orm'))))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_stopped_server_exits_with_success_and_its_output_written() -> None:
    done = _python(
        "import jupyterhub.singleuser, nbembed_singleuser as launcher\n"
        "jupyterhub.singleuser.main = lambda: print('served, stopped', end='')\n"
        "launcher.main()\n"
        "print('never reached')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "served, stopped"


def test_a_stopping_server_first_lets_a_last_save_report_reach_the_gateway() -> None:
    done = _python(
        "import os, time, jupyterhub.singleuser, nbembed_save_hook, nbembed_singleuser\n"
        "os.environ.update(NBEMBED_GATEWAY_URL='http://127.0.0.1:1', JUPYTERHUB_API_TOKEN='t')\n"
        "def slow_send(*args): time.sleep(0.5); print('reported', end='', flush=True)\n"
        "nbembed_save_hook._send = slow_send\n"
        "def serve_and_stop():\n"
        "    nbembed_save_hook.report_save({'type': 'notebook', 'path': 'a.ipynb'}, '', None)\n"
        "    print('stopped;', end='', flush=True)\n"
        "jupyterhub.singleuser.main = serve_and_stop\n"
        "nbembed_singleuser.main()\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stopped;reported"
