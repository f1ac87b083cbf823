"""File > Save and Export Notebook As: the export formats a user's server lists.

Every notebook page asks its server for them as it loads; nbembed's server
extension answers from a list worked out once per server (``ExportersHandler``
in ``nbembed_embed``), where Jupyter Server found nbconvert's exporters again on
every request (0.6-1.4 s of the server's CPU in the middle of the page's load).
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx

from infra.settings import StackSettings
from schemas import hub_username
from tests.security.kernel import user_server_token
from tests.stack.helpers import open_session


async def test_every_page_load_gets_the_same_export_formats(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user = f"exports-{uuid.uuid4().hex[:8]}"
    session = await open_session(gateway, user_id=user, notebook_name="exports")
    try:
        assert session["status"] == "ready", session
        hub_user = hub_username(stack_settings.tenants[0], user)
        token = await user_server_token(hub, hub_user)
        url = f"{stack_settings.public_hub_url}/user/{quote(hub_user)}/api/nbconvert"
        async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as server:
            answers = [await server.get(url, timeout=60) for _ in range(3)]
            anonymous = await server.get(url, headers={"Authorization": ""})
    finally:
        await gateway.delete(f"/v1/sessions/{session['id']}")

    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
    formats = answers[0].json()
    assert formats["html"] == {"output_mimetype": "text/html"}
    assert formats["notebook"] == {"output_mimetype": "application/json"}
    assert formats["pdf"]["output_mimetype"] == "application/pdf"
    assert [a.json() for a in answers[1:]] == [formats, formats]
    # Computed once, still only for the server's user: no token, no formats.
    assert anonymous.status_code in (302, 403), anonymous.text
