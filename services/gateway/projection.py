"""Projects the workers' events into the session status the API serves."""

from __future__ import annotations

from schemas import CloudEvent, ServerReady, SessionFailed, SessionReady
from services.gateway.store import SessionStore


class SessionProjection:
    """Each handler is idempotent: the store only moves a status forward."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def on_server_ready(self, event: CloudEvent[ServerReady]) -> None:
        """The server runs; the notebook is being put in place."""
        await self._store.advance(event.data.session_id, "provisioning")

    async def on_session_ready(self, event: CloudEvent[SessionReady]) -> None:
        """The notebook is in place: the host may set the iframe."""
        data = event.data
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
