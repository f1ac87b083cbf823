"""Stored notebooks: saves become revisions, and a stored notebook reopens identical."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import nbformat

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import eventually, open_session

RICH_NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "host": {"analysis": "Q1", "tags": ["finance", "draft"]},
    },
    "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": "# Q1 ✓"},
        {
            "id": "calc",
            "cell_type": "code",
            "metadata": {"tags": ["keep"], "collapsed": False},
            "execution_count": 7,
            "source": "print(6 * 7)\n{'a': 1}",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "42\n"},
                {
                    "output_type": "execute_result",
                    "execution_count": 7,
                    "metadata": {},
                    "data": {"text/plain": "{'a': 1}"},
                },
            ],
        },
    ],
}


async def put_on_server(
    stack_settings: StackSettings, hub_token: str, hub_user: str, path: str, body: dict[str, Any]
) -> None:
    url = f"{stack_settings.public_hub_url}/user/{hub_user}/api/contents/{path}"
    async with httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}, timeout=60) as h:
        response = await h.put(url, json=body)
    assert response.status_code in (200, 201), response.text


async def read_from_server(
    stack_settings: StackSettings, hub_token: str, hub_user: str, path: str
) -> dict[str, Any]:
    """The notebook file as on disk, read by nbformat (JSON from the API adds 'trusted' marks;
    on disk multi-line strings are split into lists, which nbformat joins back)."""
    url = f"{stack_settings.public_hub_url}/user/{hub_user}/api/contents/{path}"
    async with httpx.AsyncClient(headers={"Authorization": f"token {hub_token}"}) as http:
        response = await http.get(url, params={"content": 1, "type": "file", "format": "text"})
    assert response.status_code == 200
    content: dict[str, Any] = nbformat.reads(response.json()["content"], as_version=4)
    return json.loads(json.dumps(content))


async def save(gateway: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    requested = await gateway.post(f"/v1/sessions/{session_id}/saves")
    assert requested.status_code == 202, requested.text
    outcome = await gateway.get(f"/v1/saves/{requested.json()['id']}", params={"wait": 30})
    body: dict[str, Any] = outcome.json()
    assert body["status"] != "pending", body
    return body


async def test_a_saved_notebook_reopens_identical_and_saving_it_again_adds_no_revision(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    hub_token: str,
) -> None:
    run = uuid.uuid4().hex
    author, reader = f"author-{run}", f"reader-{run}"
    try:
        session = await open_session(gateway, user_id=author, notebook_name="Q1")
        assert session["status"] == "ready"
        await put_on_server(
            stack_settings,
            hub_token,
            hub_username("demo", author),
            session["path"],
            {"type": "notebook", "format": "json", "content": RICH_NOTEBOOK},
        )
        first = await save(gateway, session["id"])
        # Revision 1 is the new, empty notebook. (The server's own save hook may
        # have stored the PUT already, in which case this save changed nothing.)
        assert (first["status"], first["revision"]) == ("stored", 2)
        again = await save(gateway, session["id"])
        assert again["status"] == "stored"
        assert (again["revision"], again["changed"]) == (2, False)

        # Another of the host's users opens the stored notebook on their own server.
        reopened = await open_session(gateway, user_id=reader, notebook_id=session["notebook_id"])
        assert reopened["status"] == "ready", reopened
        assert reopened["notebook_id"] == session["notebook_id"]
        content = await read_from_server(
            stack_settings, hub_token, hub_username("demo", reader), reopened["path"]
        )
        assert content["metadata"] == RICH_NOTEBOOK["metadata"]
        assert content["cells"] == RICH_NOTEBOOK["cells"]
    finally:
        for user in (author, reader):
            await hub.delete(f"/users/{hub_username('demo', user)}/server")


async def test_unknown_or_foreign_notebook_ids_are_404(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, other_api_key: str
) -> None:
    missing = await gateway.post(
        "/v1/sessions", json={"user_id": "u", "notebook_id": uuid.uuid4().hex}
    )
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("notebook-not-found")

    user = f"owner-{uuid.uuid4().hex}"
    session = await open_session(gateway, user_id=user)
    try:
        foreign = await gateway.post(
            "/v1/sessions",
            json={"user_id": "u", "notebook_id": session["notebook_id"]},
            headers={"Authorization": f"Bearer {other_api_key}"},
        )
        assert foreign.status_code == 404
    finally:
        await hub.delete(f"/users/{hub_username('demo', user)}/server")


async def test_saves_that_cannot_be_stored_fail_with_a_reason_and_store_nothing(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    hub_token: str,
) -> None:
    user = f"breaker-{uuid.uuid4().hex}"
    hub_user = hub_username("demo", user)
    session = await open_session(gateway, user_id=user, notebook_name="big")
    try:
        await put_on_server(
            stack_settings,
            hub_token,
            hub_user,
            session["path"],
            {"type": "file", "format": "text", "content": '{"cells": "not a notebook"}'},
        )
        invalid = await save(gateway, session["id"])
        assert invalid["status"] == "failed"
        assert invalid["failure"]["code"] == "notebook_invalid"

        huge = dict(RICH_NOTEBOOK)
        huge["cells"] = [
            {"id": "big", "cell_type": "markdown", "metadata": {}, "source": "x" * (16 * 2**20)}
        ]
        await put_on_server(
            stack_settings,
            hub_token,
            hub_user,
            session["path"],
            {"type": "notebook", "format": "json", "content": huge},
        )
        too_large = await save(gateway, session["id"])
        assert too_large["status"] == "failed"
        assert too_large["failure"]["code"] == "too_large"
        assert "MiB" in too_large["failure"]["reason"]

        # Neither became a revision: a valid save now is revision 2.
        await put_on_server(
            stack_settings,
            hub_token,
            hub_user,
            session["path"],
            {"type": "notebook", "format": "json", "content": RICH_NOTEBOOK},
        )
        valid = await save(gateway, session["id"])
        assert (valid["status"], valid["revision"]) == ("stored", 2)
    finally:
        await hub.delete(f"/users/{hub_user}/server")


async def test_saves_jupyter_makes_itself_are_stored_without_the_host(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    hub_token: str,
) -> None:
    user = f"autosaver-{uuid.uuid4().hex}"
    session = await open_session(gateway, user_id=user, notebook_name="auto")
    try:
        # A save the server performs (as on Ctrl-S or autosave), nobody calls /saves.
        await put_on_server(
            stack_settings,
            hub_token,
            hub_username("demo", user),
            session["path"],
            {"type": "notebook", "format": "json", "content": RICH_NOTEBOOK},
        )

        async def stored() -> bool:
            found = await gateway.get(f"/v1/notebooks/{session['notebook_id']}")
            return found.status_code == 200 and found.json()["revision"] == 2

        await eventually(stored)
        notebook = (await gateway.get(f"/v1/notebooks/{session['notebook_id']}")).json()
        assert notebook["content"]["cells"] == RICH_NOTEBOOK["cells"]
    finally:
        await hub.delete(f"/users/{hub_username('demo', user)}/server")


async def test_a_server_cannot_report_saves_for_another_user(
    stack_settings: StackSettings, hub_token: str
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack_settings.gateway_port}") as h:
        anonymous = await h.post("/internal/server-saves", json={"path": "work/x.ipynb"})
        assert anonymous.status_code == 401
        # The service's own token is not a user's server token either.
        service = await h.post(
            "/internal/server-saves",
            json={"path": "work/x.ipynb"},
            headers={"Authorization": f"token {hub_token}"},
        )
        assert service.status_code == 401
