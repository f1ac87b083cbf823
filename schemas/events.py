"""The event contracts of nbembed: one pydantic model per CloudEvents type.

Each payload names its CloudEvents ``type`` (versioned by name: a breaking
change is a new ``.v2`` type, published beside the old one until consumers
move) and its Kafka topic. Keys keep order where it matters: the hub user for
session and server events, the notebook id for save events.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.envelope import EventData
from schemas.naming import HUB_USER_PATTERN, TENANT_ID_PATTERN
from schemas.profiles import Profile

TYPE_PREFIX = "io.nbembed"

# Event types that must stay in order relative to each other share a topic (and
# a key): a session's end is handled after its request, its failure is never
# overtaken by its readiness.
SESSIONS_TOPIC = "nbembed.sessions"
"""Commands to the provisioner: session.requested, session.ended, server.stopped,
server.warm_requested."""
SESSION_STATUS_TOPIC = "nbembed.session-status"
"""Outcomes for the gateway: session.provisioning, session.ready, session.failed,
server.lost. One topic, keyed by hub user, so the gateway applies one session's
outcomes one after another (FerretDB 1.x does not apply two updates of one
document atomically against each other)."""
NOTEBOOKS_TOPIC = "nbembed.notebooks"
"""Commands to sync about one notebook: notebook.saved, .renamed, .deleted."""
NOTEBOOK_STATUS_TOPIC = "nbembed.notebook-status"
"""Outcomes of saves for the gateway: notebook.stored, notebook.store_failed."""
INPUTS_TOPIC = "nbembed.inputs"
"""Commands to sync about a user's input files: inputs.changed."""
AUDIT_TOPIC = "nbembed.audit"
"""The audit trail: one audit.recorded event per fact a tenant may have to account for."""
GATEWAY_CHANGES_TOPIC = "nbembed.gateway-changes"
"""Gateway-internal: status.changed, so every gateway replica wakes its waiters."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
HubUser = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=HUB_USER_PATTERN)]
HostUserId = Annotated[str, StringConstraints(min_length=1, max_length=512)]
NotebookPath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
RevisionLabel = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A host's words for a revision ("before the review", "restored from revision 3")."""
InputName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$"),
]
"""A file name without folders that cannot climb out of its folder or hide (no leading dot)."""
MAX_INPUTS = 20
"""Input files one session may attach."""


class InputFile(BaseModel):
    """An input file a host attached: placed read-only in ``inputs/`` of the user's server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    name: InputName
    size: int = Field(ge=0)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _SessionEvent(EventData):
    """Session and server events are keyed by hub user: one user's events stay in order."""

    session_id: Id
    tenant_id: TenantId
    hub_user: HubUser

    def partition_key(self) -> str:
        return self.hub_user


class SessionRequested(_SessionEvent):
    """A host app asked for a notebook session for one of its users."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.session.requested.v1"
    topic: ClassVar[str] = SESSIONS_TOPIC

    host_user_id: HostUserId
    notebook_id: Id | None = Field(default=None, description="A stored notebook to open.")
    notebook_name: str | None = Field(
        default=None, max_length=200, description="Name for a new notebook (notebook_id is None)."
    )
    inputs: list[InputFile] = Field(
        default_factory=list, max_length=MAX_INPUTS, description="Placed before session.ready."
    )
    restricted: bool = Field(
        default=False,
        description="Restricted-data mode, already resolved by the gateway (the tenant's "
        "setting, or stricter if the host asked): the user's server must run with every "
        "download and export route closed while this session is open.",
    )
    profile: Profile | None = Field(
        default=None,
        description="The session's profile, resolved by the gateway within the tenant (the "
        "one the host named, or the tenant's default); None when the tenant declares none.",
    )


class ServerWarmRequested(EventData):
    """A host expects one of its users soon: start the user's server ahead of any session.

    A hint: handled in order with the user's session commands (same topic,
    same key), it starts the server unless one runs, and never restarts or
    stops a running one. A session requested afterwards finds it running.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.server.warm_requested.v1"
    topic: ClassVar[str] = SESSIONS_TOPIC

    tenant_id: TenantId
    hub_user: HubUser
    host_user_id: HostUserId
    restricted: bool = Field(
        default=False, description="The tenant's restricted-data mode, resolved by the gateway."
    )
    profile: Profile | None = Field(
        default=None, description="The profile to start the server with (as for a session)."
    )

    def partition_key(self) -> str:
        return self.hub_user


class ServerReady(_SessionEvent):
    """The user's single-user server runs; the notebook can be put in place."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.server.ready.v1"
    topic: ClassVar[str] = "nbembed.servers"

    server_path: str = Field(
        max_length=100,
        description="The hub's path of hub_user's server: exactly /user/<hub_user>/.",
    )
    host_user_id: HostUserId
    notebook_id: Id | None = None
    notebook_name: str | None = Field(default=None, max_length=200)
    inputs: list[InputFile] = Field(default_factory=list, max_length=MAX_INPUTS)
    profile: Profile | None = Field(
        default=None, description="The session's profile: its kernel goes in the notebook."
    )

    @model_validator(mode="after")
    def _server_is_the_users_own(self) -> ServerReady:
        # Sync calls this path: anything but the hub's path of this user's own
        # server (another user's, an outside URL, a traversal) is refused here,
        # so a forged event is dead-lettered before any request is made.
        if self.server_path != f"/user/{self.hub_user}/":
            raise ValueError("server_path must be the hub's path of hub_user's server")
        return self


class SessionProvisioning(_SessionEvent):
    """The user's server runs and the notebook is being put in place (the status for hosts).

    Published by the provisioner beside ``server.ready`` (sync's command), on
    the gateway's status topic, so the gateway never reads sync's commands.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.session.provisioning.v1"
    topic: ClassVar[str] = SESSION_STATUS_TOPIC


class SessionReady(_SessionEvent):
    """The notebook is in place: the host can set the iframe."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.session.ready.v1"
    topic: ClassVar[str] = SESSION_STATUS_TOPIC

    notebook_id: Id
    path: NotebookPath
    page_url: str = Field(
        max_length=2048,
        description="The notebook's page on the user's server, without any credential; "
        "the gateway wraps it in a single-use login URL for the iframe.",
    )


class SessionFailed(_SessionEvent):
    """The session cannot be opened; ``reason`` is meant for a host developer."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.session.failed.v1"
    topic: ClassVar[str] = SESSION_STATUS_TOPIC

    code: Literal[
        "hub_unavailable",
        "spawn_failed",
        "profile_conflict",
        "notebook_not_found",
        "notebook_invalid",
        "input_not_found",
        "server_unavailable",
        "internal",
    ]
    reason: Reason

    @classmethod
    def of(cls, session: _SessionEvent, code: str, reason: str) -> SessionFailed:
        """The failure of the session an earlier event was about."""
        return cls.model_validate(
            {
                "session_id": session.session_id,
                "tenant_id": session.tenant_id,
                "hub_user": session.hub_user,
                "code": code,
                "reason": reason,
            }
        )


class SessionEnded(_SessionEvent):
    """The host closed the session; the server may stop if the user has no other."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.session.ended.v1"
    topic: ClassVar[str] = SESSIONS_TOPIC


EndCode = Literal[
    "ended-by-host",
    "notebook-deleted",
    "server-culled",
    "server-stopped",
    "server-crashed",
]
"""Why a session ended, for a host's code (``end_reason`` says it for a developer):
``ended-by-host`` (DELETE /v1/sessions/{id}), ``notebook-deleted``, and the three ways
its server can go: ``server-culled`` (idle), ``server-stopped`` (an admin, or JupyterHub
itself shutting down), ``server-crashed`` (the server's process died). After the last
three, open the notebook again in a new session."""

ServerStopCause = Literal["culled", "stopped", "crashed", "nbembed"]
"""Who stopped a server, as the hub saw it: the idle culler, an admin or the hub
itself, nobody (the process died), or nbembed's own provisioner."""


class ServerStopped(EventData):
    """The hub reports (or the provisioner's reconciliation finds) that a server stopped.

    An observation, not yet a decision: the provisioner consumes it in order
    with the user's session commands (same topic, same key) and ends only the
    sessions that lived on that very server (``instance``), so a server it
    restarted itself, or a session that already got a new server, ends nothing.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.server.stopped.v1"
    topic: ClassVar[str] = SESSIONS_TOPIC

    hub_user: HubUser
    instance: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="The stopped server's instance (the provisioner's nonce in its spawn's "
        "user_options); None when the hub did not know it.",
    )
    cause: ServerStopCause
    detail: Annotated[str, StringConstraints(max_length=500)] = Field(
        default="", description="What the hub knew: who stopped it, the exit status."
    )

    def partition_key(self) -> str:
        return self.hub_user


class ServerLost(EventData):
    """A user's server is gone: these open sessions end (``code`` and ``reason`` say why)."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.server.lost.v1"
    topic: ClassVar[str] = SESSION_STATUS_TOPIC

    tenant_id: TenantId
    hub_user: HubUser
    session_ids: list[Id] = Field(max_length=1000)
    code: EndCode
    reason: Reason

    def partition_key(self) -> str:
        return self.hub_user


class InputsChanged(EventData):
    """The input files of a user's open sessions changed: sync makes ``inputs/`` match.

    ``inputs`` is the whole set for the user (every open session's), so a
    redelivered or late event converges to a state the gateway once had.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.inputs.changed.v1"
    topic: ClassVar[str] = INPUTS_TOPIC

    tenant_id: TenantId
    hub_user: HubUser
    inputs: list[InputFile] = Field(max_length=MAX_INPUTS * 10)

    def partition_key(self) -> str:
        return self.hub_user


class _NotebookEvent(EventData):
    """Save events are keyed by notebook: revisions of one notebook stay in order."""

    tenant_id: TenantId
    notebook_id: Id

    def partition_key(self) -> str:
        return f"{self.tenant_id}/{self.notebook_id}"


class NotebookSaved(_NotebookEvent):
    """A notebook was saved on a single-user server and should be stored."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.notebook.saved.v1"
    topic: ClassVar[str] = NOTEBOOKS_TOPIC

    save_id: Id
    hub_user: HubUser
    path: NotebookPath
    origin: Literal["host", "server"] = Field(
        description="host: the host page's Save; server: a save Jupyter made itself."
    )
    label: RevisionLabel | None = Field(
        default=None, description="Kept with the revision this save makes, if it makes one."
    )
    author: HostUserId | None = Field(
        default=None, description="The host user who caused the save (kept with the revision)."
    )
    restricted: bool = Field(
        default=False,
        description="Saved from a restricted session: read-only views of it show no outputs.",
    )


class NotebookRenamed(_NotebookEvent):
    """The host renamed a notebook (its display name; the file keeps its path)."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.notebook.renamed.v1"
    topic: ClassVar[str] = NOTEBOOKS_TOPIC

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NotebookDeleted(_NotebookEvent):
    """The host deleted a notebook: every revision goes from the store."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.notebook.deleted.v1"
    topic: ClassVar[str] = NOTEBOOKS_TOPIC


class NotebookStored(_NotebookEvent):
    """A notebook's content is durable in MongoDB as ``revision``."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.notebook.stored.v1"
    topic: ClassVar[str] = NOTEBOOK_STATUS_TOPIC

    save_id: Id | None = Field(description="The save stored; None for a new notebook's first.")
    hub_user: HubUser
    owner_user_id: HostUserId = Field(description="The host user whose session created it.")
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    revision: int = Field(ge=1)
    content_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    changed: bool = Field(description="False when the content equalled the latest revision.")


class NotebookStoreFailed(_NotebookEvent):
    """A save could not be stored; ``reason`` says why (nothing was truncated)."""

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.notebook.store_failed.v1"
    topic: ClassVar[str] = NOTEBOOK_STATUS_TOPIC

    save_id: Id
    code: Literal[
        "notebook_not_found", "notebook_invalid", "too_large", "server_unavailable", "internal"
    ]
    reason: Reason


AuditKind = Literal[
    "session.requested",
    "session.ready",
    "session.failed",
    "session.ended",
    "server.stopped",
    "save.requested",
    "save.stored",
    "save.failed",
    "notebook.created",
    "notebook.renamed",
    "notebook.deleted",
    "input.attached",
    "input.detached",
    "kernel.started",
    "download.refused",
    "reports.throttled",
]
"""Every fact the audit trail records (README, "Audit trail", explains each)."""

ServerReportedKind = Literal["kernel.started", "download.refused"]
"""The kinds a user's own server may report (POST /internal/audit-reports): facts that
happen only inside it. Anything else a server sends is refused."""
SERVER_REPORTED_KINDS: tuple[ServerReportedKind, ...] = get_args(ServerReportedKind)

AuditDetailKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
AuditDetailValue = Annotated[str, StringConstraints(max_length=512)]
AuditDetail = Annotated[
    dict[AuditDetailKey, AuditDetailValue],
    # Keys other than the pattern are refused: the schema says so too.
    Field(max_length=16, json_schema_extra={"additionalProperties": False}),
]
"""Free-form facts of one record, bounded: at most 16 short keys, values of 512 characters."""


class AuditRecorded(EventData):
    """One fact of the audit trail, as a tenant reads it back from ``GET /v1/audit``.

    The envelope's ``time`` is when the fact happened (for facts nbembed
    projects from its other events, that event's time; for facts a server
    reports, when the gateway received the report) and its ``id`` makes the
    record idempotent: the same fact seen twice is one record.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.audit.recorded.v1"
    topic: ClassVar[str] = AUDIT_TOPIC

    tenant_id: TenantId
    kind: AuditKind
    hub_user: HubUser | None = Field(default=None, description="None: a tenant-wide fact.")
    user_id: HostUserId | None = Field(default=None, description="The host's id of hub_user.")
    session_id: Id | None = None
    notebook_id: Id | None = None
    reported_by: Literal["nbembed", "server"] = Field(
        description="nbembed: seen by nbembed's own services; server: claimed by the user's "
        "own single-user server (authenticated as that user, but running the user's code)."
    )
    detail: AuditDetail = Field(default_factory=dict)

    def partition_key(self) -> str:
        # One user's facts stay in order; tenant-wide facts share the tenant's key.
        return f"{self.tenant_id}/{self.hub_user or ''}"


class StatusChanged(EventData):
    """A gateway replica moved a session's or a save's status in the store: wake waiters.

    Gateway-internal. Long-polls and event streams wait in whichever replica
    the host's request reached, but only one replica's projection consumes each
    status event; that replica publishes this after its store write, and every
    replica reads the topic without a consumer group, from its latest offset,
    and wakes its own waiters on ``id``, which read the store again. So a
    waiter is never woken before the change is visible, and a replica that was
    down has nothing to replay: its waiters read the store when they start.
    """

    event_type: ClassVar[str] = f"{TYPE_PREFIX}.gateway.status_changed.v1"
    topic: ClassVar[str] = GATEWAY_CHANGES_TOPIC

    kind: Literal["session", "save"]
    id: Id = Field(description="The session's or the save's id.")

    def partition_key(self) -> str:
        return self.id


ALL_EVENTS: tuple[type[EventData], ...] = (
    ServerWarmRequested,
    SessionRequested,
    ServerReady,
    SessionProvisioning,
    SessionReady,
    SessionFailed,
    SessionEnded,
    ServerStopped,
    ServerLost,
    NotebookSaved,
    NotebookRenamed,
    NotebookDeleted,
    NotebookStored,
    NotebookStoreFailed,
    InputsChanged,
    AuditRecorded,
    StatusChanged,
)
"""Every event type, in flow order."""

NOTIFICATIONS: tuple[type[EventData], ...] = (StatusChanged,)
"""Events read by every replica without a consumer group and never dead-lettered: a
lost one costs a waiter its timeout (it reads the store then), nothing else."""

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: where messages go after bounded retries."""
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic nbembed uses, dead-letter topics included (for provisioning)."""
    topics = list(dict.fromkeys(event.topic for event in ALL_EVENTS))
    no_dlq = {event.topic for event in NOTIFICATIONS}
    return topics + [dlq_topic(t) for t in topics if t not in no_dlq]
