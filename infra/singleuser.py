"""The Python environment single-user servers run in, reachable by unprivileged accounts.

The project's ``.venv`` links to the interpreter it was made with, often under
``/root/.pyenv`` (mode 0700 above it): an account other than root cannot even
exec it. Rather than open root's home to every kernel, the stack makes a small
environment from an interpreter anyone may run (Debian's ``/usr/bin/python3.11``
by default): a venv without packages whose ``.pth`` adds the project venv's
site-packages, and whose ``share/jupyter`` and ``etc/jupyter`` are links to the
project venv's (labextensions such as the nbembed bridge, JupyterLab's settings
overrides, the server extensions' configuration). Servers start with
``python -m nbembed_singleuser`` (``jupyterhub.singleuser``, started and stopped
faster) from it; kernels inherit its interpreter.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.settings import REPO_ROOT, StackSettings

PTH_NAME = "nbembed-project-venv.pth"


def runtime_dir(settings: StackSettings) -> Path:
    return settings.cache_dir / "singleuser-venv"


def runtime_python(settings: StackSettings) -> Path:
    return runtime_dir(settings) / "bin" / "python"


def ensure_runtime(settings: StackSettings) -> Path:
    """Create or refresh the runtime (idempotent, ~1 s the first time); return its python."""
    runtime = runtime_dir(settings)
    project = REPO_ROOT / ".venv"
    if not runtime_python(settings).exists():
        subprocess.run(
            [str(settings.singleuser_base_python), "-m", "venv", "--without-pip", str(runtime)],
            check=True,
        )
    site_packages = runtime / "lib" / "python3.11" / "site-packages"
    pth = site_packages / PTH_NAME
    # site.addsitedir (not a plain path line) so the project venv's own .pth files,
    # e.g. its editable installs, are processed too.
    project_site = str(project / "lib" / "python3.11" / "site-packages")
    line = f"import site; site.addsitedir({project_site!r})\n"
    if not pth.exists() or pth.read_text() != line:
        pth.write_text(line)
    for relative in ("share/jupyter", "etc/jupyter"):
        link = runtime / relative
        target = project / relative
        if link.is_symlink() and link.readlink() == target:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    for path in (runtime, *runtime.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o100 else 0o644)
    return runtime_python(settings)
