"""What the stack looked like when a stack test failed, printed under its traceback.

CI shows a failure's traceback and little else; a flaky failure of the flow
(a save never stored, a status never reached) is only explainable with the
consumer groups' backlog and the services' last warnings at that moment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from pathlib import Path

from infra import lag, stack
from infra.settings import StackSettings

NOISE = (
    "Unable connect to node",
    "Heartbeat",
    "coordinator",
    "Unable to update metadata",
    "no partition assignments",
)
"""aiokafka's chatter (Kafka stopped by the fault suite, idle spare consumers): not news."""


def snapshot(settings: StackSettings, *, warnings_per_log: int = 8) -> str:
    """Non-zero consumer lag, then each service's last warnings and errors.

    Never raises: whatever goes wrong here is reported in the text, so the
    test's own failure is what pytest shows.
    """
    try:
        return "\n".join([*_backlog(settings), *_warnings(settings, warnings_per_log)])
    except Exception as exc:
        return f"no snapshot: {exc!r}"


def _backlog(settings: StackSettings) -> list[str]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(asyncio.run, asyncio.wait_for(lag.measure(settings), 20))
    try:
        rows = future.result(timeout=30)
    except Exception as exc:
        return [f"consumer lag: unavailable ({exc!r})"]
    finally:
        pool.shutdown(wait=False)  # a hung broker call must not hold up the run
    behind = [f"  {r.group} on {r.topic}: {r.behind} behind" for r in rows if r.behind]
    return ["consumer lag: " + ("none" if not behind else ""), *behind]


def _warnings(settings: StackSettings, count: int) -> list[str]:
    lines: list[str] = []
    for name in stack.all_service_programs(settings):
        log = Path(settings.logs_dir) / f"{name}.log"
        if not log.exists():
            continue
        # Repeats of one message (a retry loop) are shown once.
        worth = {_message(line): line for line in _tail(log) if _worth_showing(line)}
        picked = list(worth.values())[-count:]
        if picked:
            lines.append(f"{name}: last warnings")
            lines.extend(f"  {line[:400]}" for line in picked)
    return lines


def _tail(log: Path, size: int = 256 * 1024) -> list[str]:
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - size))
        return handle.read().decode(errors="replace").splitlines()[1:]


def _message(line: str) -> str:
    return str(json.loads(line).get("message", ""))


def _worth_showing(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    if not isinstance(record, dict) or record.get("level") not in ("WARNING", "ERROR"):
        return False
    return not any(noise in str(record.get("message", "")) for noise in NOISE)
