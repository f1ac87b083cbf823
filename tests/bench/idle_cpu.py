"""CPU of an idle stack: ``python -m tests.bench.idle_cpu [--seconds S]`` (stack up).

What the stack costs while nobody uses it, per component (its whole process
tree), in percent of one core, over S seconds (default 60). On a 2-core machine
every idle cycle is taken from server starts, kernels and browsers. Most of it
is Kafka consumers fetching: each consumer with partitions asks the broker again
every ``fetch_max_wait_ms`` when nothing arrives, and both sides pay for it.

For an A/B, run it on stacks started two ways, e.g. every consumer at the short
wait: ``NBEMBED_{GATEWAY,SYNC,PROVISIONER}_KAFKA_PARTITION_FETCH_MAX_WAIT_MS=100``.
"""

from __future__ import annotations

import argparse
import time

import psutil

from infra.settings import StackSettings
from tests.bench.stack_footprint import program_pids


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its live descendants so far, in seconds."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main(seconds: float) -> None:
    """Print each running program's share of one core over ``seconds``."""
    pids = program_pids(StackSettings())
    if not pids:
        raise SystemExit("no stack runs: start it with `make up`")
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    used = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    print(f"idle CPU over {elapsed:.0f} s (percent of one core):")
    for name, cpu in sorted(used.items(), key=lambda item: -item[1]):
        print(f"  {name:<14} {100 * cpu / elapsed:6.1f}")
    print(f"  {'all':<14} {100 * sum(used.values()) / elapsed:6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    main(parser.parse_args().seconds)
