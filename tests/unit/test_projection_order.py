"""The gateway's projection dates a notebook by its revision, not by when it projected it.

With several gateway replicas, notebook events are projected in any order; the
library's "most recently updated first" must follow the events' own times.
(The real-stack side: tests/stack/test_library.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from schemas import CloudEvent, NotebookStored
from services.gateway.projection import Projection
from services.gateway.store import NotebookView


class RecordingView:
    """Stands in for NotebookView: remembers what it was asked to record."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, int, datetime, bool]] = []

    async def record(
        self, notebook: dict[str, Any], revision: int, stored_at: datetime, *, changed: bool
    ) -> None:
        self.recorded.append((notebook["notebook_id"], revision, stored_at, changed))


def stored(notebook_id: str, at: datetime, *, changed: bool = True) -> CloudEvent[NotebookStored]:
    data = NotebookStored(
        save_id=None,
        tenant_id="demo",
        notebook_id=notebook_id,
        hub_user="demo-abcdefghijklmnopqrstuvwxyz",
        owner_user_id="alice",
        name=notebook_id,
        revision=1,
        content_sha256="0" * 64,
        changed=changed,
    )
    event = CloudEvent.wrap(data, source="/test")
    return event.model_copy(update={"time": at})


async def test_a_late_projected_revision_keeps_its_own_time() -> None:
    view = RecordingView()
    unused: Any = None
    projection = Projection(unused, unused, cast(NotebookView, view), unused, unused)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await projection.on_notebook_stored(stored("nb1", an_hour_ago))
    assert view.recorded == [("nb1", 1, an_hour_ago, True)]


async def test_a_save_that_changed_nothing_is_recorded_as_such() -> None:
    """The view must know, so that it does not date the notebook by it."""
    view = RecordingView()
    unused: Any = None
    projection = Projection(unused, unused, cast(NotebookView, view), unused, unused)
    now = datetime.now(UTC)
    await projection.on_notebook_stored(stored("nb1", now, changed=False))
    assert view.recorded == [("nb1", 1, now, False)]
