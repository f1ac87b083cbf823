"""Read-only views and diffs: ``python -m tests.bench.view_read [--reads N] [--cells N]``.

(Stack up.) One notebook of ``--cells`` code cells with outputs (text, an HTML
table, a small PNG) is stored as two revisions; then, one request at a time
through the gateway, with no Jupyter server involved in any read:

- ``view (cached)``: ``GET /v1/notebooks/{id}/view`` of a revision already
  rendered on the replica that answers (revisions never change);
- ``view (first)``: the first view of each new revision on each replica
  (nbconvert + the sanitiser), from fresh revisions;
- ``diff``: ``GET /v1/notebooks/{id}/diff`` between the two revisions (nbdime);
- baseline, in the same run: ``GET /v1/notebooks/{id}?revision=N``, the raw
  notebook JSON the gateway already served (sync's read of the store plus the
  gateway's hop), which every view and diff also pays.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
import uuid
from typing import Any

import httpx

from infra import stack
from infra.settings import StackSettings
from schemas import hub_username
from tests.bench.report import print_ratio, print_table
from tests.stack.helpers import open_session

PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a") + b"\0" * 120).decode()


def notebook(cells: int, tag: str) -> dict[str, Any]:
    """A notebook with ``cells`` code cells, each with a few kinds of outputs."""
    made = []
    for i in range(cells):
        table = "".join(f"<tr><td>{i}</td><td>{j * i}</td></tr>" for j in range(10))
        made.append(
            {
                "id": f"c{i}",
                "cell_type": "code",
                "metadata": {},
                "execution_count": i + 1,
                "source": f"df = load({i})  # {tag}\ndf.describe()",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": f"row {i}\n" * 5},
                    {
                        "output_type": "execute_result",
                        "execution_count": i + 1,
                        "metadata": {},
                        "data": {"text/html": f"<table>{table}</table>", "text/plain": "t"},
                    },
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": PNG, "text/plain": "<Figure>"},
                    },
                ],
            }
        )
    cells_md = [{"id": "md", "cell_type": "markdown", "metadata": {}, "source": f"# {tag}"}]
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells_md + made}


async def timed(client: httpx.AsyncClient, url: str, **params: Any) -> float:
    started = time.perf_counter()
    answer = await client.get(url, params=params)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return elapsed


async def store_revision(
    gateway: httpx.AsyncClient, contents: httpx.AsyncClient, session: dict[str, Any], body: Any
) -> int:
    """Write the notebook on the user's server and save it: its revision number."""
    put = await contents.put("", json={"type": "notebook", "format": "json", "content": body})
    assert put.status_code in (200, 201), put.text
    requested = await gateway.post(f"/v1/sessions/{session['id']}/saves")
    saved = await gateway.get(f"/v1/saves/{requested.json()['id']}", params={"wait": 30})
    revision: int = saved.json()["revision"]
    return revision


async def main(reads: int, cells: int) -> None:
    settings = StackSettings()
    token = settings.service_token_file.read_text().strip()
    key = stack.api_key_file(settings, settings.tenants[0]).read_text().strip()
    user = f"bench-view-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(settings.tenants[0], user)
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with (
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as gateway,
        httpx.AsyncClient(
            base_url=f"{settings.public_hub_url}/hub/api",
            headers={"Authorization": f"token {token}"},
        ) as hub,
    ):
        session = await open_session(gateway, user_id=user, notebook_name="bench-view")
        assert session["status"] == "ready", session
        url = f"{settings.public_hub_url}/user/{hub_user}/api/contents/{session['path']}"
        try:
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"token {token}"}, timeout=60
            ) as contents:
                await run(gateway, contents, session, reads, cells)
        finally:
            await gateway.delete(f"/v1/sessions/{session['id']}")
            await hub.delete(f"/users/{hub_user}/server")


async def run(
    gateway: httpx.AsyncClient,
    contents: httpx.AsyncClient,
    session: dict[str, Any],
    reads: int,
    cells: int,
) -> None:
    notebook_id = session["notebook_id"]
    first = await store_revision(gateway, contents, session, notebook(cells, "a"))
    second = await store_revision(gateway, contents, session, notebook(cells, "b"))
    path = f"/v1/notebooks/{notebook_id}"
    size = len((await gateway.get(path, params={"revision": second})).content)
    print(f"notebook: {cells} code cells, {size / 1024:.0f} KiB of JSON per revision")
    for _ in range(4):  # render on every replica, warm connections
        await gateway.get(f"{path}/view", params={"revision": second})
    results: dict[str, list[float]] = {"raw JSON (baseline)": [], "view (cached)": [], "diff": []}
    pair = {"from": first, "to": second}
    for _ in range(reads):
        results["raw JSON (baseline)"].append(await timed(gateway, path, revision=second))
        results["view (cached)"].append(await timed(gateway, f"{path}/view", revision=second))
        results["diff"].append(await timed(gateway, f"{path}/diff", **pair))
    fresh = []
    for i in range(max(3, reads // 10)):
        revision = await store_revision(gateway, contents, session, notebook(cells, f"f{i}"))
        fresh.append(await timed(gateway, f"{path}/view", revision=revision))
    results["view (first)"] = fresh
    print_table(results, high=0.9)
    baseline = results["raw JSON (baseline)"]
    print_ratio("view (cached) over raw JSON", results["view (cached)"], baseline, 0.9)
    print_ratio("view (first) over raw JSON", results["view (first)"], baseline, 0.9)
    print_ratio("diff over raw JSON", results["diff"], baseline, 0.9)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--cells", type=int, default=20)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.reads, arguments.cells))
