"""What a user's own server says about its kernels, read with that user's own token."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


async def server_sessions(hub_url: str, hub_user: str, token: str) -> list[dict[str, Any]]:
    """The Jupyter sessions (notebook ↔ kernel) on ``hub_user``'s server."""
    return await _get(hub_url, hub_user, token, "sessions")


async def server_kernels(hub_url: str, hub_user: str, token: str) -> list[dict[str, Any]]:
    """Every kernel running on ``hub_user``'s server, in a session or not."""
    return await _get(hub_url, hub_user, token, "kernels")


async def _get(hub_url: str, hub_user: str, token: str, what: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=30) as http:
        answer = await http.get(f"{hub_url.rstrip('/')}/user/{quote(hub_user)}/api/{what}")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def for_path(sessions: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The sessions of the notebook at ``path``."""
    return [session for session in sessions if session["path"] == path]
