"""nbembed's event contracts, shared by every service: the only package they all import."""

from schemas.envelope import CloudEvent, EventData
from schemas.events import (
    ALL_EVENTS,
    SERVER_REPORTED_KINDS,
    AuditDetail,
    AuditKind,
    AuditRecorded,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerReady,
    ServerReportedKind,
    SessionEnded,
    SessionFailed,
    SessionReady,
    SessionRequested,
    all_topics,
    dlq_topic,
)
from schemas.naming import hub_username

__all__ = [
    "ALL_EVENTS",
    "SERVER_REPORTED_KINDS",
    "AuditDetail",
    "AuditKind",
    "AuditRecorded",
    "CloudEvent",
    "EventData",
    "NotebookDeleted",
    "NotebookRenamed",
    "NotebookSaved",
    "NotebookStoreFailed",
    "NotebookStored",
    "ServerReady",
    "ServerReportedKind",
    "SessionEnded",
    "SessionFailed",
    "SessionReady",
    "SessionRequested",
    "all_topics",
    "dlq_topic",
    "hub_username",
]
