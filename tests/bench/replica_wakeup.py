"""Wake-up latency across gateway replicas: ``python -m tests.bench.replica_wakeup [--saves N]``.

Needs a stack up with at least 2 replicas (``NBEMBED_STACK_REPLICAS=2 python -m
infra up``). One user saves ``N`` times; for each save, a long-poll
(``GET /v1/saves/{id}?wait=``, what the SDK's ``save()`` waits on) waits on each
gateway replica, each reached on its own port. The save's outcome is projected
by one replica (the one owning its partition): that replica's waiter wakes in
process, the others' through the change feed (``nbembed.gateway-changes``).
Latency is from the store write (the save's ``updated_at``, written by the
projecting replica) to each long-poll's answer; the first replica to answer
is counted as the projecting one (the baseline, in the same run), the others
as "other replica". Saves whose outcome was written before both polls were
sent are left out (nothing to wake).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC
from typing import Any

import httpx

from infra import stack, store
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.report import percentile, print_table
from tests.stack.helpers import open_session


async def one_save(
    replicas: list[httpx.AsyncClient], session_id: str, saves: Any
) -> tuple[float, list[float]] | None:
    """(seconds from the write to the first answer, to each later answer), or None."""
    created = await replicas[0].post(f"/v1/sessions/{session_id}/saves")
    assert created.status_code == 202, created.text
    save_id = created.json()["id"]

    async def poll(client: httpx.AsyncClient) -> tuple[float, float, str]:
        sent = time.time()
        got = await client.get(f"/v1/saves/{save_id}", params={"wait": 30})
        return sent, time.time(), got.json()["status"]

    answers = await asyncio.gather(*(poll(client) for client in replicas))
    assert all(status == "stored" for _, _, status in answers), answers
    doc = await saves.find_one({"_id": save_id})
    written = doc["updated_at"].replace(tzinfo=UTC).timestamp()
    if max(sent for sent, _, _ in answers) >= written:
        return None  # already stored when a poll arrived: it did not wait
    woke = sorted(received - written for _, received, _ in answers)
    return woke[0], woke[1:]


async def main(saves: int) -> None:
    settings = stack.adopt_running_replicas(StackSettings())
    if settings.replicas < 2:
        raise SystemExit("start the stack with NBEMBED_STACK_REPLICAS=2 (or more)")
    key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
    token = settings.service_token_file.read_text().strip()
    index = stack.SERVICES.index("gateway")
    replicas = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.replica_port(index, r)}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        for r in range(1, settings.replicas + 1)
    ]
    mongo = store.admin_client(settings)
    user = f"bench-wake-{uuid.uuid4().hex[:8]}"
    session = await open_session(replicas[0], user_id=user, notebook_name="wake")
    assert session["status"] == "ready", session
    same: list[float] = []
    other: list[float] = []
    skipped = 0
    try:
        for _ in range(saves):
            result = await one_save(
                replicas, session["id"], mongo[store.DATABASES["gateway"]]["saves"]
            )
            if result is None:
                skipped += 1
                continue
            same.append(result[0])
            other += result[1]
    finally:
        async with httpx.AsyncClient(timeout=60) as hub:
            await hub.delete(
                f"{settings.public_hub_url}/hub/api/users/{hub_username('demo', user)}/server",
                headers={"Authorization": f"token {token}"},
            )
        await mongo.close()
        await asyncio.gather(*(client.aclose() for client in replicas))
    print(
        f"wake-up after a save is stored (seconds from the store write to the long-poll's "
        f"answer); {settings.replicas} gateway replicas, {len(same)} saves ({skipped} left out)"
    )
    print_table({"projecting replica": same, "other replica": other}, 0.99)
    print(
        f"extra for the other replica: p50 {percentile(other, 0.5) - percentile(same, 0.5):.4f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=100)
    asyncio.run(main(parser.parse_args().saves))
