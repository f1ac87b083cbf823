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

**Stop.** The hub stops a server with SIGINT. With no terminal, Jupyter
Server has no handler for it: its event loop ends with a KeyboardInterrupt,
and its own clean-up (shutting kernels down) never runs, before or now. The
interpreter then tore down every module and object: 0.6-1.0 s per server,
mostly CPU (many seconds when twenty stop together on two cores), and now and
then a hang on a worker thread until the hub's SIGTERM and SIGKILL, 30 s
each, which every session end waited for. Now, once the loop has returned,
the process gives the save and audit reports still in flight up to
``REPORTS_SECONDS`` to reach the gateway, flushes its logs and exits. Kernels
notice their parent is gone and exit, as before; a file write the stop
interrupts leaves the previous file (Jupyter writes through a temporary file).
On SIGTERM Jupyter Server runs its clean-up in the loop first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import types

REPORTS_SECONDS = 2.0
"""Longest a stopping server waits for its save and audit reports to be sent."""

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


def _let_reports_finish(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for name in ("nbembed_save_hook", "nbembed_audit"):
        reporter = sys.modules.get(name)  # loaded if the server used it
        if reporter is not None:
            reporter.wait_sent(max(0.0, deadline - time.monotonic()))


def main() -> None:
    """Start the server; when it has stopped, exit without tearing down the heap."""
    _stand_in_for_hub_only_modules()
    from jupyterhub.singleuser import main as run_server

    run_server()
    _let_reports_finish(REPORTS_SECONDS)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
