"""Revisions a host can compare, restore and read: labels and authors, nbdime diffs, restores
that reach an open session's file, and read-only views rendered without a Jupyter server."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import nbdime
import pytest
from nbdime.diff_utils import to_diffentry_dicts

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session
from tests.stack.test_notebooks import RICH_NOTEBOOK, read_from_server

# Written by the user's kernel, as any code of theirs could: no save hook fires,
# so only the save the test asks for stores it (and carries its label).
WRITE = "import json\njson.dump(NOTEBOOK, open(PATH, 'w'))\nprint('ok')"


def edited(text: str) -> dict[str, Any]:
    """RICH_NOTEBOOK with a changed code cell (source and output)."""
    notebook = copy.deepcopy(RICH_NOTEBOOK)
    notebook["cells"][1]["source"] = f"print({text!r})"
    notebook["cells"][1]["outputs"][0]["text"] = f"{text}\n"
    return notebook


@dataclass(frozen=True)
class Open:
    user_id: str
    hub_user: str
    session: dict[str, Any]
    token: str


@pytest.fixture
async def opened(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> AsyncIterator[Open]:
    user_id = f"reviser-{uuid.uuid4().hex[:10]}"
    hub_user = hub_username(stack_settings.tenants[0], user_id)
    session = await open_session(gateway, user_id=user_id, notebook_name="Revisions")
    assert session["status"] == "ready", session
    try:
        yield Open(user_id, hub_user, session, await user_server_token(hub, hub_user))
    finally:
        await gateway.delete(f"/v1/sessions/{session['id']}")
        await hub.delete(f"/users/{hub_user}/server")


async def write_and_save(
    gateway: httpx.AsyncClient,
    stack_settings: StackSettings,
    opened: Open,
    notebook: dict[str, Any],
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The kernel writes ``notebook`` into the session's file; the host saves it."""
    code = f"NOTEBOOK = {json.dumps(notebook)!r}\nNOTEBOOK = json.loads(NOTEBOOK)\n"
    code = "import json\n" + code + f"PATH = {opened.session['path']!r}\n" + WRITE
    async with Kernel(stack_settings.public_hub_url, opened.hub_user, opened.token) as kernel:
        result = await kernel.run(code)
    assert result.error is None and result.stdout.strip() == "ok", result
    kwargs = {"json": body} if body is not None else {}
    requested = await gateway.post(f"/v1/sessions/{opened.session['id']}/saves", **kwargs)
    assert requested.status_code == 202, requested.text
    outcome = await gateway.get(f"/v1/saves/{requested.json()['id']}", params={"wait": 30})
    saved: dict[str, Any] = outcome.json()
    assert saved["status"] == "stored" and saved["changed"], saved
    return saved


async def test_saves_carry_labels_and_authors_and_diffs_apply(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, opened: Open
) -> None:
    notebook_id = opened.session["notebook_id"]
    first = await write_and_save(gateway, stack_settings, opened, edited("one"), {"label": "v1"})
    second = await write_and_save(
        gateway, stack_settings, opened, edited("two"), {"label": "v2", "author": "reviewer-7"}
    )
    assert second["revision"] == first["revision"] + 1

    listed = (await gateway.get(f"/v1/notebooks/{notebook_id}/revisions")).json()
    top, below = listed["revisions"][0], listed["revisions"][1]
    assert (top["revision"], top["label"], top["author"]) == (
        second["revision"],
        "v2",
        "reviewer-7",
    )
    # Without an author the save is the session's user's.
    assert (below["label"], below["author"]) == ("v1", opened.user_id)
    one = (await gateway.get(f"/v1/notebooks/{notebook_id}?revision={first['revision']}")).json()
    assert (one["label"], one["author"]) == ("v1", opened.user_id)

    answer = await gateway.get(
        f"/v1/notebooks/{notebook_id}/diff",
        params={"from": first["revision"], "to": second["revision"]},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"]["revision"], body["to"]["revision"]) == (
        first["revision"],
        second["revision"],
    )
    assert (body["from"]["label"], body["to"]["author"]) == ("v1", "reviewer-7")
    older = (await gateway.get(f"/v1/notebooks/{notebook_id}?revision={first['revision']}")).json()
    newer = (await gateway.get(f"/v1/notebooks/{notebook_id}?revision={second['revision']}")).json()
    # The diff is nbdime's: applied to the older content it gives the newer one.
    assert nbdime.patch(older["content"], to_diffentry_dicts(body["diff"])) == newer["content"]
    text = json.dumps(body["diff"])
    assert "two" in text and "cells" in text

    latest = await gateway.get(f"/v1/notebooks/{notebook_id}/diff", params={"from": 1})
    assert latest.json()["to"]["revision"] == second["revision"]
    same = await gateway.get(f"/v1/notebooks/{notebook_id}/diff", params={"from": 1, "to": 1})
    assert same.json()["diff"] == []


async def test_diffs_and_views_of_what_does_not_exist_are_problems(
    gateway: httpx.AsyncClient, opened: Open
) -> None:
    notebook_id = opened.session["notebook_id"]
    for path, params in (
        (f"/v1/notebooks/{notebook_id}/diff", {"from": 1, "to": 99}),
        (f"/v1/notebooks/{uuid.uuid4().hex}/diff", {"from": 1}),
        (f"/v1/notebooks/{notebook_id}/view", {"revision": 99}),
        (f"/v1/notebooks/{uuid.uuid4().hex}/view", {}),
    ):
        answer = await gateway.get(path, params=params)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    for params in ({"from": 0}, {"from": "x"}, {}, {"from": 1, "to": -1}):
        answer = await gateway.get(f"/v1/notebooks/{notebook_id}/diff", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    for revision, expected in ((99, 404), (0, 422)):
        restored = await gateway.post(f"/v1/notebooks/{notebook_id}/revisions/{revision}/restore")
        assert restored.status_code == expected, restored.text


async def test_a_restore_is_a_new_latest_revision_and_reaches_the_open_file(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, hub_token: str, opened: Open
) -> None:
    notebook_id = opened.session["notebook_id"]
    first = await write_and_save(gateway, stack_settings, opened, edited("kept"))
    second = await write_and_save(gateway, stack_settings, opened, edited("regretted"))

    answer = await gateway.post(
        f"/v1/notebooks/{notebook_id}/revisions/{first['revision']}/restore",
        json={"author": "host-admin"},
    )
    assert answer.status_code == 200, answer.text
    restored = answer.json()
    assert restored["revision"] == second["revision"] + 1
    assert (restored["changed"], restored["restored_from"]) == (True, first["revision"])
    assert (restored["sessions_updated"], restored["sessions_not_updated"]) == (1, 0)

    latest = (await gateway.get(f"/v1/notebooks/{notebook_id}")).json()
    old = (await gateway.get(f"/v1/notebooks/{notebook_id}?revision={first['revision']}")).json()
    assert latest["revision"] == restored["revision"]
    assert latest["content"] == old["content"]
    assert latest["label"] == f"restored from revision {first['revision']}"
    assert (latest["author"], latest["restored_from"]) == ("host-admin", first["revision"])
    top = (await gateway.get(f"/v1/notebooks/{notebook_id}/revisions")).json()["revisions"][0]
    assert (top["revision"], top["restored_from"]) == (restored["revision"], first["revision"])

    # The open session's file on the user's server now holds the restored content.
    on_server = await read_from_server(
        stack_settings, hub_token, opened.hub_user, opened.session["path"]
    )
    assert [c["source"] for c in on_server["cells"]] == [
        c["source"] for c in old["content"]["cells"]
    ]
    assert "kept" in json.dumps(on_server) and "regretted" not in json.dumps(on_server)

    # Restoring the content the latest already has adds nothing.
    again = await gateway.post(f"/v1/notebooks/{notebook_id}/revisions/{first['revision']}/restore")
    assert (again.json()["revision"], again.json()["changed"]) == (restored["revision"], False)


async def test_a_view_is_inert_html_of_the_revision(
    gateway: httpx.AsyncClient, stack_settings: StackSettings, opened: Open
) -> None:
    notebook_id = opened.session["notebook_id"]
    saved = await write_and_save(gateway, stack_settings, opened, edited("shown"))
    answer = await gateway.get(
        f"/v1/notebooks/{notebook_id}/view", params={"revision": saved["revision"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
    assert answer.headers["x-nbembed-revision"] == str(saved["revision"])
    page = answer.text
    assert "Q1 ✓" in page and "shown" in page  # the markdown cell, the code and its output
    assert "<script" not in page.lower()

    first = await gateway.get(f"/v1/notebooks/{notebook_id}/view", params={"revision": 1})
    assert first.status_code == 200 and "shown" not in first.text
    latest = await gateway.get(f"/v1/notebooks/{notebook_id}/view")
    assert latest.text == page
