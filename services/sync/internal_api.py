"""Sync's internal HTTP API: the gateway reads stored notebooks through it.

Sync owns the stored notebooks; the gateway serves them to host apps without
touching sync's collections. Every call carries the internal token
(``Authorization: Bearer``) and a tenant id, and another tenant's notebook
does not exist.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query

from services.sync.store import NotebookStore


def create_internal_api(store: NotebookStore, token: str) -> FastAPI:
    """The internal API, to mount under ``/internal`` of sync's HTTP server."""

    def authorised(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "internal token required")

    api = FastAPI(
        title="nbembed sync (internal)",
        dependencies=[Depends(authorised)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def record(tenant_id: str, notebook_id: str) -> dict[str, Any]:
        found = await store.get_notebook(tenant_id, notebook_id)
        if found is None:
            raise HTTPException(404, f"no notebook {notebook_id}")
        return found

    @api.get("/notebooks/{notebook_id}/revisions")
    async def revisions(notebook_id: str, tenant_id: Annotated[str, Query()]) -> dict[str, Any]:
        """The revisions kept, newest first (without content)."""
        found = await record(tenant_id, notebook_id)
        log: list[dict[str, Any]] = sorted(
            found.get("revision_log", []), key=lambda entry: -entry["revision"]
        )
        return {"latest_revision": found.get("latest_revision", 0), "revisions": log}

    @api.get("/notebooks/{notebook_id}/revisions/{number}")
    async def revision(
        notebook_id: str, number: str, tenant_id: Annotated[str, Query()]
    ) -> dict[str, Any]:
        """One revision with its content; ``latest`` for the newest."""
        found = await record(tenant_id, notebook_id)
        wanted = found.get("latest_revision", 0) if number == "latest" else _int(number)
        stored = await store.revision(tenant_id, notebook_id, wanted)
        if stored is None:
            raise HTTPException(404, f"no revision {number} of notebook {notebook_id}")
        created: datetime = stored["created_at"]
        return {
            "revision": stored["revision"],
            "sha256": stored["sha256"],
            "created_at": created.isoformat(),
            "content": stored["content"],
        }

    return api


def _int(value: str) -> int:
    if not value.isdigit():
        raise HTTPException(404, f"no revision {value}")
    return int(value)
