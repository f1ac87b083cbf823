"""Input files: data comes in through the host, read-only, and leaves with the session.

A host uploads files through the gateway and names them when it opens a
session; the user's kernel finds them in ``inputs/`` beside the notebook
(``work/inputs/`` from the server's root) before the session is
ready, cannot change them through Jupyter, and sees them come and go as the
host attaches and detaches them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session

CSV = b"region,amount\nnorth,12\nsouth,7\n"


async def upload(gateway: httpx.AsyncClient, name: str, content: bytes) -> dict[str, Any]:
    response = await gateway.post("/v1/inputs", params={"name": name}, content=content)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def user_id(hub: httpx.AsyncClient) -> AsyncIterator[str]:
    user = f"inputs-{uuid.uuid4().hex[:12]}"
    yield user
    await hub.delete(f"/users/{hub_username('demo', user)}/server")


async def listing(kernel: Kernel) -> str:
    result = await kernel.run(
        "import os; d = 'work/inputs'; print(sorted(os.listdir(d)) if os.path.isdir(d) else [])"
    )
    assert result.error is None, result.error
    return result.stdout.strip()


async def test_an_input_is_in_place_read_only_before_ready_and_follows_attach_and_detach(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    user_id: str,
) -> None:
    data = await upload(gateway, "sales.csv", CSV)
    assert data["size"] == len(CSV) and data["name"] == "sales.csv"
    assert (await gateway.get(f"/v1/inputs/{data['id']}")).json()["sha256"] == data["sha256"]
    notes = await upload(gateway, "notes.txt", b"read me\n")

    session = await open_session(gateway, user_id=user_id, inputs=[data["id"]])
    assert session["status"] == "ready", session
    assert [item["id"] for item in session["inputs"]] == [data["id"]]

    hub_user = hub_username("demo", user_id)
    token = await user_server_token(hub, hub_user)
    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        read = await kernel.run("print(open('work/inputs/sales.csv').read(), end='')")
        assert read.stdout == CSV.decode()
        # Read-only to the user's code opening it for writing, and to Jupyter.
        write = await kernel.run("open('work/inputs/sales.csv', 'w').write('forged')")
        assert write.error is not None and "PermissionError" in write.error
        async with httpx.AsyncClient(
            base_url=kernel.server, headers={"Authorization": f"token {token}"}
        ) as server:
            overwrite = await server.put(
                "/api/contents/work/inputs/sales.csv",
                json={"type": "file", "format": "text", "content": "forged"},
            )
            assert overwrite.status_code == 403, overwrite.text
            assert (await server.delete("/api/contents/work/inputs/sales.csv")).status_code == 403
        assert (await kernel.run("print(open('work/inputs/sales.csv').read(), end='')")).stdout == (
            CSV.decode()
        )

        attached = await gateway.put(f"/v1/sessions/{session['id']}/inputs/{notes['id']}")
        assert attached.status_code == 204, attached.text

        async def both() -> bool:
            return await listing(kernel) == "['notes.txt', 'sales.csv']"

        await eventually(both)
        detached = await gateway.delete(f"/v1/sessions/{session['id']}/inputs/{data['id']}")
        assert detached.status_code == 204, detached.text

        async def only_notes() -> bool:
            return await listing(kernel) == "['notes.txt']"

        await eventually(only_notes)
    view = (await gateway.get(f"/v1/sessions/{session['id']}")).json()
    assert [item["name"] for item in view["inputs"]] == ["notes.txt"]


async def test_bad_inputs_get_clear_errors(
    gateway: httpx.AsyncClient, other_api_key: str, stack_settings: StackSettings
) -> None:
    for name in ("../escape.csv", ".hidden", "a/b.csv", ""):
        refused = await gateway.post("/v1/inputs", params={"name": name}, content=b"x")
        assert refused.status_code == 422, (name, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    too_large = b"x" * (10 * 2**20 + 1)
    refused = await gateway.post("/v1/inputs", params={"name": "big.bin"}, content=too_large)
    assert refused.status_code == 413

    mine = await upload(gateway, "mine.csv", CSV)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {other_api_key}"},
    ) as other_tenant:
        assert (await other_tenant.get(f"/v1/inputs/{mine['id']}")).status_code == 404
        stolen = await other_tenant.post(
            "/v1/sessions", json={"user_id": "thief", "inputs": [mine["id"]]}
        )
        assert stolen.status_code == 404
        assert stolen.json()["type"].endswith("input-not-found")

    unknown = await gateway.post("/v1/sessions", json={"user_id": "u", "inputs": ["nope"]})
    assert unknown.status_code == 404
    assert (await gateway.delete(f"/v1/inputs/{mine['id']}")).status_code == 204
    assert (await gateway.get(f"/v1/inputs/{mine['id']}")).status_code == 404
