"""Projects the workers' events into the session status the API serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from schemas import (
    CloudEvent,
    EndCode,
    NotebookStored,
    NotebookStoreFailed,
    ServerLost,
    SessionFailed,
    SessionProvisioning,
    SessionReady,
)
from services.gateway.store import Document, NotebookView, OpenFiles, SaveStore, SessionStore

log = logging.getLogger(__name__)

EndSession = Callable[[Document, str, EndCode], Awaitable[None]]
"""Ends one session (``api.end``): record the reason, release its file, tell the provisioner."""


class Projection:
    """Each handler is idempotent: the stores only move a status forward.

    A session's outcomes all come on one topic, keyed by its hub user, so one
    consumer applies them one after another: FerretDB 1.x applies an update
    by reading and writing back the whole document, and two handlers writing
    the same session at once could undo each other.
    """

    def __init__(
        self,
        store: SessionStore,
        saves: SaveStore,
        notebooks: NotebookView,
        open_files: OpenFiles,
        end_session: EndSession,
    ) -> None:
        self._store = store
        self._saves = saves
        self._notebooks = notebooks
        self._open_files = open_files
        self._end_session = end_session

    async def on_session_provisioning(self, event: CloudEvent[SessionProvisioning]) -> None:
        """The server runs; the notebook is being put in place."""
        await self._store.advance(event.data.session_id, "provisioning")

    async def on_session_ready(self, event: CloudEvent[SessionReady]) -> None:
        """The notebook is in place: the host may set the iframe."""
        data = event.data
        # Saves Jupyter reports itself name the file: remember which notebook it is.
        await self._open_files.record(
            data.hub_user, data.path, data.tenant_id, data.notebook_id, data.session_id
        )
        moved = await self._store.advance(
            data.session_id,
            "ready",
            notebook_id=data.notebook_id,
            path=data.path,
            page_url=data.page_url,
        )
        session = None if moved else await self._store.get_any(data.session_id)
        if session is not None and session["status"] == "ended":
            # Ended while its notebook was being put in place (its server stopped, the
            # host closed it): the file is no longer this session's to store.
            await self._open_files.release(data.hub_user, data.path, data.session_id)

    async def on_server_lost(self, event: CloudEvent[ServerLost]) -> None:
        """The user's server is gone: its open sessions end with the reason and code.

        Only the event's own user's sessions (the event names them; a forged id
        of someone else's session is skipped).
        """
        data = event.data
        for session_id in data.session_ids:
            session = await self._store.get_any(session_id)
            if session is None or session["hub_user"] != data.hub_user:
                log.warning("server.lost names a session of another user", extra={"id": session_id})
                continue
            if session["tenant_id"] != data.tenant_id or session["status"] in ("failed", "ended"):
                continue  # a failed session stays failed; an ended one keeps its reason
            await self._end_session(session, data.reason, data.code)

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
            event.time,
            changed=data.changed,
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
