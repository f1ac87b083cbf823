"""One file per notebook, and only while a session has it open.

Attacks from issue 7: opening bob's notebook "Report" for alice wrote it over
alice's own ``work/Report.ipynb``, and alice's later saves of that file became
revisions of bob's notebook; and a file kept being stored after its session
ended. Each test acts from a real kernel on the user's real server, with the
server's own hub token, exactly as the server's post-save hook reports saves.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import eventually, open_session

# Runs in the attacker's kernel: write a marker into a file of the user's
# server, then report the save with the server's own token (as the hook does).
WRITE_AND_REPORT = """
import json, os, httpx
path = {path!r}
nb = json.load(open(path))
nb["cells"].append({{"cell_type": "markdown", "id": "m{marker}", "metadata": {{}},
                     "source": {marker!r}}})
json.dump(nb, open(path, "w"))
answer = httpx.post(os.environ["NBEMBED_GATEWAY_URL"] + "/internal/server-saves",
                    json={{"path": path}},
                    headers={{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}})
print(answer.status_code)
"""


def tenant_of(stack_settings: StackSettings) -> str:
    return stack_settings.tenants[0]


async def known(gateway: httpx.AsyncClient, notebook_id: str) -> None:
    """Wait until the gateway has heard that a new notebook is stored."""

    async def listed() -> bool:
        return (await gateway.get(f"/v1/notebooks/{notebook_id}")).status_code == 200

    await eventually(listed)


async def content_of(gateway: httpx.AsyncClient, notebook_id: str) -> str:
    """The latest stored revision of a notebook, as text."""
    answer = await gateway.get(f"/v1/notebooks/{notebook_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return json.dumps(body["content"])


async def write_and_report(kernel: Kernel, path: str, marker: str) -> int:
    result = await kernel.run(WRITE_AND_REPORT.format(path=path, marker=marker))
    assert result.error is None, result.error
    return int(result.stdout.strip())


async def test_opening_another_users_notebook_never_touches_your_own_file(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    run = uuid.uuid4().hex[:10]
    alice, bob = f"files-alice-{run}", f"files-bob-{run}"
    alice_hub = hub_username(tenant_of(stack_settings), alice)
    own = await open_session(gateway, user_id=alice, notebook_name="Report")
    bobs = await open_session(gateway, user_id=bob, notebook_name="Report")
    assert own["status"] == bobs["status"] == "ready"
    assert own["path"] == bobs["path"] == "work/Report.ipynb"  # same name, two servers
    await known(gateway, bobs["notebook_id"])

    opened = await open_session(gateway, user_id=alice, notebook_id=bobs["notebook_id"])
    assert opened["status"] == "ready", opened
    # Bob's notebook gets a file of its own on alice's server.
    assert opened["path"] != own["path"]
    again = await open_session(gateway, user_id=alice, notebook_id=bobs["notebook_id"])
    assert again["path"] == opened["path"]  # and keeps it

    token = await user_server_token(hub, alice_hub)
    async with Kernel(stack_settings.public_hub_url, alice_hub, token) as kernel:
        # Alice's own file, saved (Ctrl-S), is a revision of her notebook only.
        assert await write_and_report(kernel, own["path"], f"alice-own-{run}") == 202

        async def stored() -> bool:
            return f"alice-own-{run}" in await content_of(gateway, own["notebook_id"])

        await eventually(stored)
        assert f"alice-own-{run}" not in await content_of(gateway, bobs["notebook_id"])

        # The copy of bob's notebook on alice's server saves into bob's notebook.
        assert await write_and_report(kernel, opened["path"], f"alice-on-bobs-{run}") == 202

        async def stored_in_bobs() -> bool:
            return f"alice-on-bobs-{run}" in await content_of(gateway, bobs["notebook_id"])

        await eventually(stored_in_bobs)
        assert f"alice-on-bobs-{run}" not in await content_of(gateway, own["notebook_id"])


async def test_a_file_is_stored_only_while_its_session_is_open(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    run = uuid.uuid4().hex[:10]
    user = f"files-ended-{run}"
    hub_user = hub_username(tenant_of(stack_settings), user)
    kept = await open_session(gateway, user_id=user, notebook_name="Kept")
    closing = await open_session(gateway, user_id=user, notebook_name="Closing")
    assert (await gateway.delete(f"/v1/sessions/{closing['id']}")).status_code == 204
    await known(gateway, closing["notebook_id"])
    await known(gateway, kept["notebook_id"])
    before = await content_of(gateway, closing["notebook_id"])

    token = await user_server_token(hub, hub_user)
    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        # The ended session's file: refused, and nothing is stored.
        assert await write_and_report(kernel, closing["path"], f"late-{run}") == 404
        # A file nbembed never placed: refused.
        result = await kernel.run(
            "import nbformat; nbformat.write(nbformat.v4.new_notebook(), 'mine.ipynb')"
        )
        assert result.error is None, result.error
        assert await write_and_report(kernel, "mine.ipynb", f"own-{run}") == 404
        # The session still open keeps saving.
        assert await write_and_report(kernel, kept["path"], f"kept-{run}") == 202

        async def stored() -> bool:
            return f"kept-{run}" in await content_of(gateway, kept["notebook_id"])

        await eventually(stored)
    assert await content_of(gateway, closing["notebook_id"]) == before
