"""The audit trail: facts from nbembed's own events and from users' servers, on one topic.

Why one projector in the gateway rather than an audit publish in every service:
the facts a tenant must account for (sessions, saves, notebooks) already travel
on Kafka, durably, as the events the services exchange. The projector reads
those topics in a consumer group of its own and publishes one
``audit.recorded`` event per fact on ``nbembed.audit``; its offset moves only
after that publish, so nothing acknowledged is lost, and each audit event's
id derives from its source event's id, so a redelivery publishes the same
record again and the store keeps one. The same group then writes the
``nbembed.audit`` topic into the ``audit`` collection, which is also where
facts reported by users' servers (kernel started, download refused) land:
the gateway publishes those itself (`publish`), as anything else in nbembed
may that sees a new fact first (the host attaching an input file, say).

To audit another fact: add its kind to `schemas.AuditKind`, then either map
its event here (`AuditProjector.attach`; every event type on a topic this
group reads MUST have a handler, or it is dead-lettered: a unit test checks)
or call `publish` where the fact happens.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from faststream.kafka import KafkaBroker

from schemas import (
    AuditKind,
    AuditRecorded,
    CloudEvent,
    EventData,
    InputFile,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerLost,
    ServerStopped,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionProvisioning,
    SessionReady,
    SessionRequested,
)
from services.common.kafka import EventConsumer, publish_event
from services.gateway.audit_store import AuditStore, AuditUsers
from services.gateway.store import SaveStore, SessionStore

SOURCE = "/nbembed/gateway/audit"
AUDIT_NAMESPACE = uuid.UUID("5d1f3a0e-2f7c-4b8e-9c61-3e4a7b9d0c12")
DETAIL_CHARS = 512


def audit_id(kind: str, origin: str) -> str:
    """The id of the audit record of ``kind`` derived from ``origin`` (an event or report id)."""
    return str(uuid.uuid5(AUDIT_NAMESPACE, f"{kind}:{origin}"))


def input_detail(item: InputFile) -> dict[str, str]:
    """What an input.attached or input.detached record says about the file."""
    return {"input_id": item.id, "name": item.name, "size": str(item.size), "sha256": item.sha256}


def clip(value: object) -> str:
    """A detail value, cut to the length the contract allows."""
    return str(value)[:DETAIL_CHARS]


def event(
    record: AuditRecorded, *, event_id: str | None = None, time: datetime | None = None
) -> CloudEvent[AuditRecorded]:
    """The audit event of one fact."""
    fields: dict[str, Any] = {"source": SOURCE, "type": record.event_type, "data": record}
    if event_id is not None:
        fields["id"] = event_id
    if time is not None:
        fields["time"] = time
    if record.session_id is not None:
        fields["subject"] = record.session_id
    return CloudEvent[AuditRecorded](**fields)


async def publish(
    broker: KafkaBroker,
    record: AuditRecorded,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[AuditRecorded]:
    """Put one fact on the audit topic (acknowledged by every in-sync replica)."""
    published = event(record, event_id=event_id, time=time)
    await publish_event(broker, published)
    return published


class AuditProjector:
    """Turns nbembed's own events into audit events, and audit events into records.

    Every handler is idempotent: the audit id derives from the source event,
    and the store inserts by id.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        records: AuditStore,
        users: AuditUsers,
        sessions: SessionStore,
        saves: SaveStore,
    ) -> None:
        self._broker = broker
        self._records = records
        self._users = users
        self._sessions = sessions
        self._saves = saves

    def attach(self, consumer: EventConsumer) -> None:
        """Register every handler on ``consumer`` (the audit consumer group)."""
        consumer.on(ServerWarmRequested, self.on_server_warm_requested)
        consumer.on(SessionRequested, self.on_session_requested)
        consumer.on(SessionProvisioning, self.on_session_provisioning)
        consumer.on(SessionReady, self.on_session_ready)
        consumer.on(SessionFailed, self.on_session_failed)
        consumer.on(SessionEnded, self.on_session_ended)
        consumer.on(ServerStopped, self.on_server_stopped)
        consumer.on(ServerLost, self.on_server_lost)
        consumer.on(NotebookSaved, self.on_notebook_saved)
        consumer.on(NotebookStored, self.on_notebook_stored)
        consumer.on(NotebookStoreFailed, self.on_notebook_store_failed)
        consumer.on(NotebookRenamed, self.on_notebook_renamed)
        consumer.on(NotebookDeleted, self.on_notebook_deleted)
        consumer.on(AuditRecorded, self.on_audit_recorded)

    async def on_audit_recorded(self, event: CloudEvent[AuditRecorded]) -> None:
        """Keep the record for the tenant to read (once, whatever the redeliveries)."""
        await self._records.record(event)

    async def on_server_warm_requested(self, event: CloudEvent[ServerWarmRequested]) -> None:
        """Nothing to record: a warm-up is a hint, and the server it starts gives no user
        access (no token, no login) until a session opens, which is recorded."""

    async def on_session_requested(self, event: CloudEvent[SessionRequested]) -> None:
        data = event.data
        detail = {"notebook_name": clip(data.notebook_name)} if data.notebook_name else {}
        if data.profile is not None:
            detail["profile"] = data.profile.name
        await self._emit(
            event,
            "session.requested",
            hub_user=data.hub_user,
            user_id=data.host_user_id,
            session_id=data.session_id,
            notebook_id=data.notebook_id,
            detail=detail,
        )
        for item in data.inputs:
            await self._emit(
                event,
                "input.attached",
                hub_user=data.hub_user,
                user_id=data.host_user_id,
                session_id=data.session_id,
                detail=input_detail(item),
                origin=item.id,
            )

    async def on_session_provisioning(self, event: CloudEvent[SessionProvisioning]) -> None:
        """Nothing to record: a step on the way, with no access of its own; the session's
        outcome (ready or failed) is recorded."""

    async def on_session_ready(self, event: CloudEvent[SessionReady]) -> None:
        data = event.data
        await self._emit(
            event,
            "session.ready",
            hub_user=data.hub_user,
            session_id=data.session_id,
            notebook_id=data.notebook_id,
            detail={"path": clip(data.path)},
        )

    async def on_session_failed(self, event: CloudEvent[SessionFailed]) -> None:
        data = event.data
        await self._emit(
            event,
            "session.failed",
            hub_user=data.hub_user,
            session_id=data.session_id,
            detail={"code": data.code, "reason": clip(data.reason)},
        )

    async def on_session_ended(self, event: CloudEvent[SessionEnded]) -> None:
        data = event.data
        session = await self._sessions.get_any(data.session_id)
        reason = (session or {}).get("end_reason")
        detail = {"reason": clip(reason)} if reason else {}
        if (session or {}).get("end_code"):
            detail["code"] = str((session or {})["end_code"])
        await self._emit(
            event,
            "session.ended",
            hub_user=data.hub_user,
            session_id=data.session_id,
            notebook_id=(session or {}).get("notebook_id"),
            detail=detail,
        )

    async def on_server_stopped(self, event: CloudEvent[ServerStopped]) -> None:
        """Nothing to record: a notice the provisioner still checks (`server.lost` is the fact)."""

    async def on_server_lost(self, event: CloudEvent[ServerLost]) -> None:
        data = event.data
        await self._emit(
            event,
            "server.stopped",
            hub_user=data.hub_user,
            detail={
                "code": data.code,
                "reason": clip(data.reason),
                "sessions": clip(",".join(data.session_ids)),
            },
        )

    async def on_notebook_saved(self, event: CloudEvent[NotebookSaved]) -> None:
        data = event.data
        save = await self._saves.get_any(data.save_id)
        await self._emit(
            event,
            "save.requested",
            hub_user=data.hub_user,
            session_id=(save or {}).get("session_id"),
            notebook_id=data.notebook_id,
            detail={"save_id": data.save_id, "origin": data.origin, "path": clip(data.path)},
        )

    async def on_notebook_stored(self, event: CloudEvent[NotebookStored]) -> None:
        data = event.data
        if data.save_id is None:  # a new notebook's first revision, made when its session opened
            await self._emit(
                event,
                "notebook.created",
                hub_user=data.hub_user,
                user_id=data.owner_user_id,
                notebook_id=data.notebook_id,
                detail={"name": clip(data.name), "revision": str(data.revision)},
            )
            return
        # The saver, not the notebook's creator (another user may have saved it).
        save = await self._saves.get_any(data.save_id) or {}
        await self._emit(
            event,
            "save.stored",
            hub_user=save.get("hub_user", data.hub_user),
            session_id=save.get("session_id"),
            notebook_id=data.notebook_id,
            detail={
                "save_id": data.save_id,
                "revision": str(data.revision),
                "changed": str(data.changed).lower(),
            },
        )

    async def on_notebook_store_failed(self, event: CloudEvent[NotebookStoreFailed]) -> None:
        data = event.data
        save = await self._saves.get_any(data.save_id) or {}
        await self._emit(
            event,
            "save.failed",
            hub_user=save.get("hub_user"),
            session_id=save.get("session_id"),
            notebook_id=data.notebook_id,
            detail={"save_id": data.save_id, "code": data.code, "reason": clip(data.reason)},
        )

    async def on_notebook_renamed(self, event: CloudEvent[NotebookRenamed]) -> None:
        data = event.data
        await self._emit(
            event, "notebook.renamed", notebook_id=data.notebook_id, detail={"name": data.name}
        )

    async def on_notebook_deleted(self, event: CloudEvent[NotebookDeleted]) -> None:
        await self._emit(event, "notebook.deleted", notebook_id=event.data.notebook_id)

    async def _emit(
        self,
        source: CloudEvent[Any],
        kind: AuditKind,
        *,
        hub_user: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        notebook_id: str | None = None,
        detail: dict[str, str] | None = None,
        origin: str | None = None,
    ) -> None:
        """Publish the audit record of ``kind`` that ``source`` implies (``origin`` tells
        apart several records of one kind from one event)."""
        data: EventData = source.data
        tenant_id: str = getattr(data, "tenant_id")  # noqa: B009 - every source event has one
        if hub_user is not None and user_id is None:
            user_id = await self._user_id(tenant_id, hub_user)
        record = AuditRecorded(
            tenant_id=tenant_id,
            kind=kind,
            hub_user=hub_user,
            user_id=user_id,
            session_id=session_id,
            notebook_id=notebook_id,
            reported_by="nbembed",
            detail=detail or {},
        )
        event_id = audit_id(kind, source.id if origin is None else f"{source.id}:{origin}")
        await publish(self._broker, record, event_id=event_id, time=source.time)

    async def _user_id(self, tenant_id: str, hub_user: str) -> str | None:
        known = await self._users.get(hub_user)
        if known is None or known["tenant_id"] != tenant_id:
            return None
        user_id: str = known["user_id"]
        return user_id
