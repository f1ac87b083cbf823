"""``python -m infra up|down|status|restart|lag``, ``python -m infra dlq list|replay TOPIC``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from infra import dlq, lag, stack
from infra.settings import StackSettings


def main(argv: list[str] | None = None) -> int:
    """Run one stack command; the exit status says whether it worked."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dlq"]:
        return dlq.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "restart", "lag"])
    args = parser.parse_args(argv)
    # A running stack keeps its replica count until `down` (supervisord's programs).
    settings = stack.adopt_running_replicas(StackSettings())

    if args.command == "up":
        started = time.monotonic()
        timings = stack.up(settings)
        for name, seconds in timings.items():
            print(f"  {name:<12} ready after {seconds:5.1f}s")
        print(f"nbembed is up ({time.monotonic() - started:.1f}s)")
        print(f"  demo page    {settings.host_page_origin}/")
        print(f"  JupyterHub   {settings.browser_hub_url}/hub/")
        if settings.per_user_origins:
            print(f"  per-user origins: <hub user>.jupyter.{settings.origins_domain}")
        print(f"  gateway      http://127.0.0.1:{settings.gateway_port}/  (API docs at /docs)")
        if settings.replicas > 1:
            print(f"  replicas     {settings.replicas} of each service (see `status`)")
        print(f"  logs         {settings.logs_dir}/")
        for tenant_id in settings.tenants:
            mode = " (restricted)" if tenant_id in settings.restricted_tenants else ""
            key_file = stack.api_key_file(settings, tenant_id)
            print(f"  API key of tenant {tenant_id!r}{mode}: {key_file}")
        print(f"  operator credential (python -m nbembed.admin): {settings.admin_token_file}")
        print("  stop with    make down")
        return 0
    if args.command == "restart":
        for name, seconds in stack.restart_services(settings).items():
            print(f"  {name:<12} ready after {seconds:5.1f}s")
        return 0
    if args.command == "lag":
        print(f"  {'consumer group':<24} {'topic':<26} {'partitions':>10} {'behind':>8}")
        for row in asyncio.run(lag.measure(settings)):
            print(f"  {row.group:<24} {row.topic:<26} {row.partitions:>10} {row.behind:>8}")
        return 0
    if args.command == "status":
        answers = stack.status(settings)
        for name, ok in answers.items():
            print(f"  {name:<12} {'ready' if ok else 'DOWN'}")
        return 0 if all(answers.values()) else 1
    problems = stack.down(settings)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print("nbembed is down" + (" (after cleaning up, see above)" if problems else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
