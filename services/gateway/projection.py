"""Projects the workers' events into the session status the API serves."""

from __future__ import annotations

import asyncio

from schemas import (
    CloudEvent,
    NotebookStored,
    NotebookStoreFailed,
    ServerReady,
    SessionFailed,
    SessionReady,
)
from services.gateway.store import NotebookView, OpenFiles, SaveStore, SessionStore


class Projection:
    """Each handler is idempotent: the stores only move a status forward."""

    def __init__(
        self,
        store: SessionStore,
        saves: SaveStore,
        notebooks: NotebookView,
        open_files: OpenFiles,
    ) -> None:
        self._store = store
        self._saves = saves
        self._notebooks = notebooks
        self._open_files = open_files

    async def on_server_ready(self, event: CloudEvent[ServerReady]) -> None:
        """The server runs; the notebook is being put in place."""
        await self._store.advance(event.data.session_id, "provisioning")

    async def on_session_ready(self, event: CloudEvent[SessionReady]) -> None:
        """The notebook is in place: the host may set the iframe."""
        data = event.data
        # Saves Jupyter reports itself name the file: remember which notebook it is.
        await self._open_files.record(
            data.hub_user, data.path, data.tenant_id, data.notebook_id, data.session_id
        )
        await self._store.advance(
            data.session_id,
            "ready",
            notebook_id=data.notebook_id,
            path=data.path,
            page_url=data.page_url,
        )

    async def on_session_failed(self, event: CloudEvent[SessionFailed]) -> None:
        """The session cannot open; keep the reason for the host developer."""
        data = event.data
        await self._store.advance(
            data.session_id, "failed", failure_code=data.code, failure_reason=data.reason
        )

    async def on_notebook_stored(self, event: CloudEvent[NotebookStored]) -> None:
        """A revision is durable: the notebook exists for its tenant, the save is done."""
        data = event.data
        view = self._notebooks.record(
            {
                "tenant_id": data.tenant_id,
                "notebook_id": data.notebook_id,
                "hub_user": data.hub_user,
                "name": data.name,
                "user_id": data.owner_user_id,
            },
            data.revision,
        )
        if data.save_id is None:
            await view
            return
        # Also records saves the gateway did not request (Jupyter's own: autosave, Ctrl-S).
        # Two documents, independent: written side by side, one round trip of waiting.
        await asyncio.gather(
            view,
            self._saves.complete(
                {
                    "_id": data.save_id,
                    "tenant_id": data.tenant_id,
                    "notebook_id": data.notebook_id,
                },
                "stored",
                revision=data.revision,
                changed=data.changed,
            ),
        )

    async def on_notebook_store_failed(self, event: CloudEvent[NotebookStoreFailed]) -> None:
        """A save could not be stored; keep the reason."""
        data = event.data
        await self._saves.complete(
            {"_id": data.save_id, "tenant_id": data.tenant_id, "notebook_id": data.notebook_id},
            "failed",
            failure_code=data.code,
            failure_reason=data.reason,
        )
