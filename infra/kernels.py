"""The local stack's second kernel: another virtual environment, for the demo profiles.

Profiles choose a kernel per session; on the local stack two must exist so a
tenant can offer two environments. The default ``python3`` kernel runs in the
single-user runtime (infra/singleuser.py). This module makes a second one,
``nbembed-data``: its own venv (from the same interpreter every account may
run), whose site-packages holds one package the default environment lacks
(``tabulate``) and whose ``.pth`` adds the project venv's site-packages (for
ipykernel and the rest, without copying ~200 MB). So the two kernels differ
in interpreter prefix, importable packages and environment
(``NBEMBED_KERNEL``), which is what a profile shows a user, and installing it
takes about a second plus one small wheel. Run by infra/install.sh
(``python -m infra.kernels``); idempotent.

The kernelspec lives in ``<cache>/kernels/jupyter/kernels/<name>`` and the
hub adds ``<cache>/kernels/jupyter`` to the servers' ``JUPYTER_PATH``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from infra.settings import REPO_ROOT, StackSettings

DATA_KERNEL = "nbembed-data"
"""The second kernel's name (a profile's ``kernel``)."""
DATA_PACKAGES = ("tabulate==0.9.0",)
"""What sets it apart: small, pure Python, absent from the project's environment."""
PTH_NAME = "nbembed-project-venv.pth"


def jupyter_dir(settings: StackSettings) -> Path:
    """The data folder the servers' ``JUPYTER_PATH`` gets (it holds ``kernels/``)."""
    return settings.cache_dir / "kernels" / "jupyter"


def venv_dir(settings: StackSettings, name: str = DATA_KERNEL) -> Path:
    return settings.cache_dir / "kernels" / name


def kernelspec(python: Path, name: str) -> dict[str, object]:
    """The kernel.json of kernel ``name`` running ``python``."""
    return {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (data: tabulate)",
        "language": "python",
        "env": {"NBEMBED_KERNEL": name},
        "metadata": {"debugger": True},
    }


def ensure_data_kernel(settings: StackSettings) -> Path:
    """Create or refresh the second kernel (idempotent); return its kernelspec folder."""
    venv = venv_dir(settings)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(
            [str(settings.singleuser_base_python), "-m", "venv", "--without-pip", str(venv)],
            check=True,
        )
    site_packages = venv / "lib" / "python3.11" / "site-packages"
    project_site = str(REPO_ROOT / ".venv" / "lib" / "python3.11" / "site-packages")
    line = f"import site; site.addsitedir({project_site!r})\n"
    pth = site_packages / PTH_NAME
    if not pth.exists() or pth.read_text() != line:
        pth.write_text(line)
    wanted = [site_packages / (pin.replace("==", "-") + ".dist-info") for pin in DATA_PACKAGES]
    if not all(dist_info.exists() for dist_info in wanted):
        subprocess.run(
            [
                str(settings.venv_bin / "uv"),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                *DATA_PACKAGES,
            ],
            check=True,
        )
    spec_dir = jupyter_dir(settings) / "kernels" / DATA_KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(kernelspec(python, DATA_KERNEL), indent=1) + "\n"
    )
    for path in (settings.cache_dir / "kernels", *(settings.cache_dir / "kernels").rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o100 else 0o644)
    return spec_dir


if __name__ == "__main__":
    print(ensure_data_kernel(StackSettings()))
