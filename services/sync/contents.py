"""Sync's client for the single-user servers' contents API (through the hub's proxy)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ContentsError(Exception):
    """The server refused or failed a contents request (``status`` 0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ContentsClient:
    """Files on users' servers, with the service token (scope ``access:servers``)."""

    def __init__(self, hub_url: str, api_token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=hub_url.rstrip("/"),
            headers={"Authorization": f"token {api_token}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(
        self, method: str, server_path: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        url = f"{server_path.rstrip('/')}/api/contents/{quote(path)}"
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ContentsError(f"server unreachable: {type(exc).__name__}: {exc}") from exc

    async def ensure_directory(self, server_path: str, path: str) -> None:
        """Create folder ``path`` (idempotent: 201 on create, 200 if it exists)."""
        response = await self._request("PUT", server_path, path, json={"type": "directory"})
        if response.status_code not in (200, 201):
            raise ContentsError(
                f"creating {path}: {response.status_code} {response.text}", response.status_code
            )

    async def list_folder(self, server_path: str, path: str) -> set[str]:
        """The names in folder ``path``, creating the folder if it does not exist."""
        response = await self._request("GET", server_path, path, params={"content": "1"})
        if response.status_code == 404:
            await self.ensure_directory(server_path, path)
            return set()
        if response.status_code != 200:
            raise ContentsError(f"listing {path}: {response.status_code}", response.status_code)
        return {item["name"] for item in response.json()["content"]}

    async def exists(self, server_path: str, path: str) -> bool:
        """Whether a file or folder exists at ``path``."""
        response = await self._request("GET", server_path, path, params={"content": "0"})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise ContentsError(f"reading {path}: {response.status_code}", response.status_code)
        return True

    async def put_notebook(self, server_path: str, path: str, notebook: dict[str, Any]) -> None:
        """Write ``notebook`` (a validated nbformat dict) at ``path``, replacing any file there."""
        response = await self._request(
            "PUT",
            server_path,
            path,
            json={"type": "notebook", "format": "json", "content": notebook},
        )
        if response.status_code not in (200, 201):
            raise ContentsError(
                f"writing {path}: {response.status_code} {response.text}", response.status_code
            )

    async def get_notebook_text(self, server_path: str, path: str) -> str:
        """The notebook file at ``path`` as last saved, as its raw JSON text.

        Raw text (``type=file``) lets the caller measure the size before parsing.
        """
        response = await self._request(
            "GET", server_path, path, params={"type": "file", "format": "text", "content": "1"}
        )
        if response.status_code != 200:
            raise ContentsError(f"reading {path}: {response.status_code}", response.status_code)
        text: str = response.json()["content"]
        return text

    async def get_notebook(self, server_path: str, path: str) -> dict[str, Any]:
        """The notebook at ``path`` as last saved on the server."""
        response = await self._request(
            "GET", server_path, path, params={"type": "notebook", "content": "1"}
        )
        if response.status_code != 200:
            raise ContentsError(f"reading {path}: {response.status_code}", response.status_code)
        content: dict[str, Any] = response.json()["content"]
        return content
