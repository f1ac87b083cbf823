"""The gateway's client for sync's internal API (stored notebooks, revisions, input files)."""

from __future__ import annotations

from typing import Any

import httpx


class SyncUnavailable(Exception):
    """Sync did not answer; the caller answers 503."""


class SyncClient:
    """Reads stored notebooks from sync, which owns them."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/internal",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, tenant_id: str, body: dict[str, Any] | None = None
    ) -> httpx.Response | None:
        """Sync's answer to one call for ``tenant_id``: None on 404, SyncUnavailable otherwise."""
        try:
            response = await self._http.request(
                method, path, params={"tenant_id": tenant_id}, json=body
            )
        except httpx.TransportError as exc:
            raise SyncUnavailable(str(exc)) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SyncUnavailable(f"sync answered {response.status_code}")
        return response

    async def _get(self, path: str, tenant_id: str) -> dict[str, Any] | None:
        response = await self._call("GET", path, tenant_id)
        if response is None:
            return None
        body: dict[str, Any] = response.json()
        return body

    async def revisions(self, tenant_id: str, notebook_id: str) -> dict[str, Any] | None:
        """The revisions kept of a notebook, newest first; None if it does not exist."""
        return await self._get(f"/notebooks/{notebook_id}/revisions", tenant_id)

    async def revision(
        self, tenant_id: str, notebook_id: str, revision: int | None
    ) -> dict[str, Any] | None:
        """One revision with content (the latest when ``revision`` is None)."""
        number = "latest" if revision is None else str(revision)
        return await self._get(f"/notebooks/{notebook_id}/revisions/{number}", tenant_id)

    async def revision_sized(
        self, tenant_id: str, notebook_id: str, revision: int | None
    ) -> tuple[dict[str, Any], int] | None:
        """One revision with content, and the size of its JSON as sync sent it."""
        number = "latest" if revision is None else str(revision)
        path = f"/notebooks/{notebook_id}/revisions/{number}"
        response = await self._call("GET", path, tenant_id)
        if response is None:
            return None
        body: dict[str, Any] = response.json()
        return body, len(response.content)

    async def restore(
        self, tenant_id: str, notebook_id: str, revision: int, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Have sync make ``revision`` the latest; None when it does not exist."""
        path = f"/notebooks/{notebook_id}/revisions/{revision}/restore"
        response = await self._call("POST", path, tenant_id, body)
        if response is None:
            return None
        restored: dict[str, Any] = response.json()
        return restored

    async def put_input(
        self, tenant_id: str, input_id: str, name: str, content: bytes
    ) -> dict[str, Any]:
        """Hand an input file's bytes to sync; its metadata (id, name, size, sha256)."""
        try:
            response = await self._http.put(
                f"/inputs/{input_id}",
                params={"tenant_id": tenant_id, "name": name},
                content=content,
            )
        except httpx.TransportError as exc:
            raise SyncUnavailable(str(exc)) from exc
        if response.status_code != 200:
            raise SyncUnavailable(f"sync answered {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    async def delete_input(self, tenant_id: str, input_id: str) -> None:
        """Have sync forget an input file's bytes (idempotent)."""
        try:
            response = await self._http.delete(
                f"/inputs/{input_id}", params={"tenant_id": tenant_id}
            )
        except httpx.TransportError as exc:
            raise SyncUnavailable(str(exc)) from exc
        if response.status_code != 204:
            raise SyncUnavailable(f"sync answered {response.status_code}")
