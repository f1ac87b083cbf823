"""The audit trail (v1): what happened in a tenant's sessions, for the tenant alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from schemas import AuditKind, hub_username
from services.gateway.audit_store import BadCursor, Document, Position
from services.gateway.deps import GatewayDep, TenantDep
from services.gateway.problems import Problem

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntry(BaseModel):
    """One fact of the trail."""

    id: str = Field(description="The audit event's id (also its CloudEvents id on Kafka).")
    kind: AuditKind
    time: datetime = Field(description="When it happened (millisecond precision).")
    user_id: str | None = Field(description="The host's user; None for tenant-wide facts.")
    session_id: str | None
    notebook_id: str | None
    reported_by: str = Field(
        description="nbembed: seen by nbembed's services; server: reported by the user's own "
        "Jupyter server, which runs the user's code (a claim of that user, not a proof)."
    )
    detail: dict[str, str]

    @classmethod
    def of(cls, doc: Document) -> AuditEntry:
        return cls(
            id=doc["_id"],
            kind=doc["kind"],
            time=doc["time"],
            user_id=doc.get("user_id"),
            session_id=doc.get("session_id"),
            notebook_id=doc.get("notebook_id"),
            reported_by=doc["reported_by"],
            detail=doc.get("detail") or {},
        )


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; None when there is none yet. To follow "
        "the trail, ask again later with since= the last item's time (it comes back once more)."
    )


def _position(cursor: str | None) -> Position | None:
    if not cursor:
        return None
    try:
        return Position.decode(cursor)
    except BadCursor:
        raise Problem(422, "Invalid request", "cursor: not a cursor from this API") from None


ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_time(value: object) -> object:
    """Only a date and time (pydantic alone also reads ``0.5`` as seconds since 1970)."""
    if not (isinstance(value, str) and ISO_TIME.match(value)):
        raise ValueError("an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")
    return value


@router.get("", response_model=AuditPage)
async def list_audit(
    tenant: TenantDep,
    parts: GatewayDep,
    user_id: Annotated[str | None, Query(max_length=512, description="Only this user's.")] = None,
    since: Annotated[
        datetime | None,
        BeforeValidator(_iso_time),
        Query(description="Only facts at or after this time (ISO 8601; UTC)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    """The tenant's audit trail, oldest first, a page at a time.

    Session starts and ends, saves and their outcome, renames and deletions,
    kernels started and downloads refused (see the README's audit section for
    every kind). Only this tenant's facts, whatever the filters.
    """
    after = _position(cursor)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    hub_user = hub_username(tenant.id, user_id) if user_id is not None else None
    docs = await parts.audit.page(
        tenant.id, hub_user=hub_user, since=since, after=after, limit=limit + 1
    )
    page = docs[:limit]
    next_cursor = Position.of(page[-1]).encode() if len(docs) > limit else None
    return AuditPage(items=[AuditEntry.of(doc) for doc in page], next_cursor=next_cursor)
