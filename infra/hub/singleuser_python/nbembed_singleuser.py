"""Runs a single-user server as ``python -m jupyterhub.singleuser`` does, but
starts and stops it faster.

**Start.** ``jupyterhub.singleuser`` imports the hub's request logger
(``jupyterhub.log``), which imports the hub's page handlers and, via
``jupyterhub.metrics``, its ORM, and with them SQLAlchemy's ORM and Alembic:
about 1.7 s of CPU at every server start on these machines (``python -X
importtime``), for code only the hub runs. Empty stand-ins, registered before
the import, keep them out:

- the logger uses the page handler class only in an ``isinstance`` check (so
  no request is taken for the hub's health check);
- the metrics and scope modules name the ORM only in the hub's own code paths
  (its periodic collector; group look-ups when given a database, which a
  single-user server never passes).

A newer JupyterHub that used either at import time would fail every server's
start at once, which every stack test would show.

**Stop.** The hub stops a server with SIGINT. Jupyter Server then leaves its
event loop, and the interpreter tears down every module and object it holds:
0.6-1.0 s of CPU per server, and many seconds when twenty stop together on two
cores, which every session end waits for. Once the loop has returned there is
nothing left to do (kernels notice their parent is gone and exit; files are
written), so the process flushes its logs and exits at once.
"""

from __future__ import annotations

import logging
import os
import sys
import types

# Modules the hub's single-user code imports but only the hub itself uses.
HUB_ONLY_MODULES = {
    "jupyterhub.handlers.pages": {"HealthCheckHandler": type("HealthCheckHandler", (), {})},
    "jupyterhub.orm": {},
}


def _stand_in_for_hub_only_modules() -> None:
    for name, attributes in HUB_ONLY_MODULES.items():
        module = types.ModuleType(name, "nbembed: not loaded in single-user servers")
        module.__dict__.update(attributes)
        sys.modules.setdefault(name, module)


def main() -> None:
    """Start the server; when it has stopped, exit without tearing down the heap."""
    _stand_in_for_hub_only_modules()
    from jupyterhub.singleuser import main as run_server

    run_server()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
