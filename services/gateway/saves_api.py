"""Saves (v1): the host page's Save button, and Jupyter's own saves, become revisions."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pymongo.errors import DuplicateKeyError

from schemas import CloudEvent, NotebookSaved
from schemas.events import HostUserId, RevisionLabel
from services.gateway.api import SOURCE, Failure, record, session_not_found
from services.gateway.deps import CallerDep, Gateway, GatewayDep, resolve_session_caller
from services.gateway.outbox import event_entry
from services.gateway.problems import Problem, errors
from services.gateway.store import Document, SaveStatus, SaveStore

router = APIRouter(prefix="/v1", tags=["saves"])


class SaveView(BaseModel):
    """A save as the host sees it: pending until the revision is durable."""

    id: str
    session_id: str | None
    notebook_id: str
    status: SaveStatus
    revision: int | None = None
    changed: bool | None = None
    failure: Failure | None = None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, doc: Document) -> SaveView:
        failure = None
        if doc.get("failure_code"):
            failure = Failure(code=doc["failure_code"], reason=doc.get("failure_reason", ""))
        return cls(
            id=doc["_id"],
            session_id=doc.get("session_id"),
            notebook_id=doc["notebook_id"],
            status=doc["status"],
            revision=doc.get("revision"),
            changed=doc.get("changed"),
            failure=failure,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            links={"self": f"/v1/saves/{doc['_id']}"},
        )


NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_string(value: object) -> object:
    """A timestamp is an ISO 8601 string: a number (or a string of one) is refused, not
    read as seconds since 1970, which would name a made-up save of another time."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or NUMBER.fullmatch(value):
        raise ValueError("an ISO 8601 date-time string is required")
    return value


FileTimestamp = Annotated[AwareDatetime, BeforeValidator(_iso_string)]
"""A file's timestamp as Jupyter answers it (ISO 8601, with its offset)."""


class SaveRequest(BaseModel):
    """What the revision a save makes says about itself (both optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    label: RevisionLabel | None = Field(
        default=None, description="Kept with the new revision (none when nothing changed)."
    )
    author: HostUserId | None = Field(
        default=None, description="The host user who caused the save; default: the session's."
    )
    last_modified: FileTimestamp | None = Field(
        default=None,
        strict=False,  # an ISO 8601 string in JSON (and only that: FileTimestamp)
        description="The file's timestamp Jupyter answered to the save (the SDK sends it): the "
        "save is then the same one the server's own report of it names, whichever comes "
        "first, so one Jupyter save is one save here (label and author: the first's).",
    )


JUPYTER_SAVES = uuid.UUID("6f1d3c4e-58a2-4c1b-9d7e-2b8f0a4c9e11")
"""Namespace of the ids of saves named by a file's timestamp."""


def jupyter_save_id(hub_user: str, path: str, last_modified: datetime) -> str:
    """The id of the save Jupyter made of ``path`` on ``hub_user``'s server at ``last_modified``.

    Whoever reports it (the server's hook, the SDK) names the same save: one
    Jupyter save is one save record and one revision decision, so ``changed``
    says the truth for it, and a report's retry is the same save. Lookups are
    by ``_id``, the only fast ones on FerretDB. Two saves of one file in the
    same microsecond would be one (a file's timestamp has that resolution).
    """
    stamp = last_modified.astimezone(UTC).isoformat(timespec="microseconds")
    return uuid.uuid5(JUPYTER_SAVES, f"{hub_user}\n{path}\n{stamp}").hex


def _save_not_found(save_id: str) -> Problem:
    return Problem(404, "Not found", f"No save {save_id} for this caller.", kind="save-not-found")


@router.post(
    "/sessions/{session_id}/saves",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SaveView,
    responses=errors(409),
)
async def request_save(
    session_id: str,
    caller: CallerDep,
    parts: GatewayDep,
    response: Response,
    body: SaveRequest | None = None,
) -> SaveView:
    """Store the session's notebook, as last saved in Jupyter, as a new revision.

    Callable with the tenant's API key or the session's browser token (the
    SDK's ``save()`` does this once Jupyter has saved, with ``last_modified``).
    Poll the returned link, with ``wait``, until the status is ``stored`` or
    ``failed`` (a browser token polls ``GET /v1/sessions/{id}/saves`` with the
    same ``last_modified``: the server may have reported that save first).
    """
    caller = await resolve_session_caller(parts, caller, session_id)
    session = await parts.sessions.get(caller.tenant_id, session_id)
    if session is None or not caller.may_use(session_id):
        raise session_not_found(session_id)
    if session["status"] != "ready":
        raise Problem(
            409,
            "Conflict",
            f"Session {session_id} is {session['status']}; only a ready session can save.",
            kind="session-not-ready",
        )
    stamp = body.last_modified if body else None
    saved = NotebookSaved(
        save_id=jupyter_save_id(session["hub_user"], session["path"], stamp)
        if stamp
        else uuid.uuid4().hex,
        tenant_id=caller.tenant_id,
        notebook_id=session["notebook_id"],
        hub_user=session["hub_user"],
        path=session["path"],
        origin="host",
        label=body.label if body else None,
        author=(body.author if body else None) or session.get("host_user_id"),
        restricted=bool(session.get("restricted")),
    )
    save = await record_save(
        parts,
        {"session_id": session_id},
        CloudEvent.wrap(saved, source=SOURCE, subject=session_id),
    )
    response.headers["Location"] = f"/v1/saves/{save['_id']}"
    return SaveView.of(save)


async def record_save(
    parts: Gateway, fields: Document, event: CloudEvent[NotebookSaved]
) -> Document:
    """Record a pending save and the notebook.saved event that asks for it, then publish.

    The save and its event are one write: answered 202, the save reaches sync
    (now, or through the relay after a crash or while Kafka is down). A save
    recorded before under the same id (a Jupyter save reported by both the
    server and the SDK, or a retry) is answered as it is, and nothing is added.
    """
    saved = event.data
    existing = await parts.saves.get_any(saved.save_id)
    if existing is not None:
        return existing
    entries = event_entry(event)
    doc = {
        "_id": saved.save_id,
        "tenant_id": saved.tenant_id,
        "notebook_id": saved.notebook_id,
        "hub_user": saved.hub_user,
        **fields,
    }
    try:
        hold, save = await record(
            parts,
            SaveStore.COLLECTION,
            saved.save_id,
            entries,
            lambda: parts.saves.create(doc, entries),
        )
    except DuplicateKeyError:  # the other reporter won the race: its save is this one
        raced = await parts.saves.get_any(saved.save_id)
        assert raced is not None
        return raced
    await parts.outbox.deliver(SaveStore.COLLECTION, saved.save_id, entries, hold)
    parts.saves.changes.notify(saved.save_id)  # wakes lookups waiting for it to exist
    return save


@router.get("/saves/{save_id}", response_model=SaveView)
async def get_save(
    save_id: str,
    caller: CallerDep,
    parts: GatewayDep,
    wait: Annotated[
        float, Query(ge=0, description="Long-poll: wait up to this many seconds for the outcome.")
    ] = 0,
) -> SaveView:
    """A save's status; with ``wait`` the answer comes as soon as it is stored or failed."""
    doc = await parts.saves.get_any(save_id)
    if doc is None:
        raise _save_not_found(save_id)
    if not caller.tenant_id:  # a browser token: only its own session's saves
        caller = await resolve_session_caller(parts, caller, doc.get("session_id") or "")
    if doc["tenant_id"] != caller.tenant_id or not caller.may_use(doc.get("session_id")):
        raise _save_not_found(save_id)
    timeout = min(wait, parts.settings.max_wait_seconds)
    if timeout > 0 and doc["status"] == "pending":
        doc = (
            await parts.saves.wait_for_change(caller.tenant_id, save_id, "pending", timeout) or doc
        )
    return SaveView.of(doc)


@router.get("/sessions/{session_id}/saves", response_model=SaveView, responses=errors(404))
async def find_jupyter_save(
    session_id: str,
    caller: CallerDep,
    parts: GatewayDep,
    last_modified: Annotated[
        FileTimestamp,
        Query(description="The file's timestamp Jupyter answered to the save (ISO 8601)."),
    ],
    wait: Annotated[
        float,
        Query(
            ge=0,
            description="Long-poll: wait up to this many seconds for it to be reported "
            "and then for its outcome.",
        ),
    ] = 0,
) -> SaveView:
    """The save of the session's notebook that Jupyter made at ``last_modified``, whatever
    started it (Ctrl-S, autosave, the SDK): how the SDK learns the revision of a save made
    inside Jupyter.

    Callable with the tenant's API key or the session's browser token. Only the
    session's own file is ever looked at (the save is named by the session's
    user, path and the timestamp), so a browser token reads the saves of its own
    session's notebook and nothing else. 404 when no such save was reported
    (within ``wait``).
    """
    caller = await resolve_session_caller(parts, caller, session_id)
    session = await parts.sessions.get(caller.tenant_id, session_id)
    if session is None or not caller.may_use(session_id) or not session.get("path"):
        raise session_not_found(session_id)
    save_id = jupyter_save_id(session["hub_user"], session["path"], last_modified)
    deadline = asyncio.get_running_loop().time() + min(wait, parts.settings.max_wait_seconds)
    doc = await _reported(parts, save_id, deadline)
    if (
        doc is None
        or doc["tenant_id"] != caller.tenant_id
        or doc["notebook_id"] != session["notebook_id"]
    ):
        raise _save_not_found(save_id)
    left = deadline - asyncio.get_running_loop().time()
    if left > 0 and doc["status"] == "pending":
        doc = await parts.saves.wait_for_change(caller.tenant_id, save_id, "pending", left) or doc
    return SaveView.of(doc)


async def _reported(parts: Gateway, save_id: str, deadline: float) -> Document | None:
    """The save once some reporter recorded it, waiting until ``deadline`` (loop time)."""
    with parts.saves.changes.subscribe(save_id) as changed:
        doc = await parts.saves.get_any(save_id)
        left = deadline - asyncio.get_running_loop().time()
        if doc is not None or left <= 0:
            return doc
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), left)
    return await parts.saves.get_any(save_id)
