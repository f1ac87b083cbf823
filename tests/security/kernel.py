"""Run an attacker's code in a real kernel on a user's real single-user server.

The security suite acts as a hostile user would: it opens a session through
the gateway (so the user's server runs exactly as nbembed starts it), gets a
token for that user's own server (what the user's browser has), starts a
kernel through the server's REST API and executes code over the kernel's
websocket, collecting what the code printed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from schemas import hub_username
from tests.stack.helpers import open_session


@dataclass
class ExecutionResult:
    """What a cell produced: its stdout, stderr and the error, if it raised."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


async def user_server_token(hub: httpx.AsyncClient, hub_user: str, seconds: int = 600) -> str:
    """A short-lived token of ``hub_user`` for that user's own server only.

    ``hub`` is the hub API with the service token (role scope ``tokens``).
    """
    response = await hub.post(
        f"/users/{quote(hub_user)}/tokens",
        json={
            "expires_in": seconds,
            "scopes": [f"access:servers!server={hub_user}/"],
            "note": "nbembed security test",
        },
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


class Kernel:
    """One kernel on ``hub_user``'s server, driven with that user's own token."""

    def __init__(
        self,
        hub_url: str,
        hub_user: str,
        token: str,
        kernel_name: str = "python3",
        *,
        kernel_id: str | None = None,
    ) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.kernel_name = kernel_name
        self.hub_user = hub_user
        self.token = token
        self.server = f"{self.hub_url}/user/{quote(hub_user)}"
        self.kernel_id = kernel_id
        """Given: a running kernel (one sync started) to attach to, left running at the end."""
        self._own = kernel_id is None
        self._ws: Any = None

    async def __aenter__(self) -> Kernel:
        if self.kernel_id is None:
            async with httpx.AsyncClient(
                headers={"Authorization": f"token {self.token}"}, timeout=60
            ) as http:
                started = await http.post(
                    f"{self.server}/api/kernels", json={"name": self.kernel_name}
                )
                assert started.status_code == 201, started.text
                self.kernel_id = started.json()["id"]
        ws_url = self.server.replace("http", "ws", 1) + f"/api/kernels/{self.kernel_id}/channels"
        request = HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"})
        self._ws = await websocket_connect(request)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            self._ws.close()
        if not self._own:
            return
        async with httpx.AsyncClient(
            headers={"Authorization": f"token {self.token}"}, timeout=30
        ) as http:
            await http.delete(f"{self.server}/api/kernels/{self.kernel_id}")

    async def run(self, code: str, timeout: float = 60) -> ExecutionResult:
        """Execute ``code`` and wait until the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        await self._ws.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "attacker",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                }
            )
        )
        result = ExecutionResult()
        async with asyncio.timeout(timeout):
            while True:
                raw = await self._ws.read_message()
                if raw is None:
                    raise AssertionError("kernel websocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                content = msg["content"]
                if kind == "stream":
                    if content["name"] == "stdout":
                        result.stdout += content["text"]
                    else:
                        result.stderr += content["text"]
                elif kind == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
                elif kind in ("execute_result", "display_data"):
                    result.outputs.append(content)
                elif kind == "status" and content["execution_state"] == "idle":
                    return result


@dataclass(frozen=True)
class SessionUser:
    """A host user with a ready session, its hub name and a token for its own server."""

    hub_user: str
    session_id: str
    path: str
    token: str


async def session_users(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    tenant_id: str,
    names: tuple[str, ...],
    tag: str,
) -> list[SessionUser]:
    """One ready session for each of ``names`` (users of the gateway client's tenant)."""
    run = uuid.uuid4().hex[:8]
    made = []
    for who in names:
        user_id = f"{who}-{run}"
        session = await open_session(gateway, user_id=user_id, notebook_name=f"{tag}-{who}")
        assert session["status"] == "ready", session
        name = hub_username(tenant_id, user_id)
        token = await user_server_token(hub, name)
        made.append(SessionUser(name, session["id"], session["path"], token))
    return made


async def run_in_kernel(hub_url: str, user: SessionUser, code: str) -> str:
    """Run ``code`` in a new kernel of ``user``'s server; what it printed (no error allowed)."""
    async with Kernel(hub_url, user.hub_user, user.token) as kernel:
        result = await kernel.run(code)
    assert result.error is None, result
    return result.stdout
