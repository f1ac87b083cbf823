"""Notebooks whose keys a document may not hold (dotted MIME types, ``$``) are stored whole.

ipywidgets keeps its state under ``application/vnd.jupyter.widget-state+json`` and
Plotly its figures under ``application/vnd.plotly.v1+json``; FerretDB refuses
dotted field names, so before revisions were stored encoded such a save failed
after its retries.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import open_session
from tests.stack.test_notebooks import RICH_NOTEBOOK, put_on_server, read_from_server, save

WIDGETS = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"


def notebook_with_widgets_and_plotly() -> dict[str, Any]:
    notebook = copy.deepcopy(RICH_NOTEBOOK)
    notebook["metadata"]["widgets"] = {
        WIDGETS: {"state": {"m1": {"model_name": "IntSliderModel"}}, "version_major": 2}
    }
    notebook["metadata"]["host"]["$where"] = {"a.b": "metadata a user's code wrote"}
    notebook["cells"][1]["outputs"].append(
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {PLOTLY: {"data": [{"x": [1, 2], "y": [3, 4]}]}, "text/plain": "Figure"},
        }
    )
    return notebook


async def test_a_notebook_with_widget_state_and_plotly_output_is_stored_and_reopens(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    hub_token: str,
) -> None:
    run = uuid.uuid4().hex
    author, reader = f"widgets-{run}", f"widget-reader-{run}"
    notebook = notebook_with_widgets_and_plotly()
    try:
        session = await open_session(gateway, user_id=author, notebook_name="widgets")
        await put_on_server(
            stack_settings,
            hub_token,
            hub_username("demo", author),
            session["path"],
            {"type": "notebook", "format": "json", "content": notebook},
        )
        stored = await save(gateway, session["id"])
        assert (stored["status"], stored["revision"]) == ("stored", 2), stored

        read = (await gateway.get(f"/v1/notebooks/{session['notebook_id']}")).json()
        assert read["content"]["metadata"]["widgets"] == notebook["metadata"]["widgets"]
        assert read["content"]["cells"] == notebook["cells"]

        reopened = await open_session(gateway, user_id=reader, notebook_id=session["notebook_id"])
        assert reopened["status"] == "ready", reopened
        on_disk = await read_from_server(
            stack_settings, hub_token, hub_username("demo", reader), reopened["path"]
        )
        assert on_disk["metadata"] == notebook["metadata"]
        assert on_disk["cells"] == notebook["cells"]

        view = await gateway.get(f"/v1/notebooks/{session['notebook_id']}/view")
        assert view.status_code == 200, view.text
        # The Plotly output's plain-text fallback is shown (source is highlighted markup).
        assert "<pre>Figure</pre>" in view.text and "Q1" in view.text
    finally:
        for user in (author, reader):
            await hub.delete(f"/users/{hub_username('demo', user)}/server")
