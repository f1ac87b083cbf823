"""Who may do what on Kafka: one principal per service, least privilege, one table.

The table below is written in the code's own terms, the events each service
publishes and the events each of its consumer groups handles (read from each
service's ``app.py`` and handlers), so the topics follow ``schemas/`` when an
event moves. Everything else is derived: a consumer group reads its events'
topics and dead-letters to their ``.dlq`` topics (``EventConsumer``), a
publisher writes its events' topics. The services' producers are not
idempotent (``services.common.kafka.PRODUCER_OPTIONS`` says why); were one to
be, Kafka 4 lets it initialise with WRITE on any topic (KIP-679), so no
cluster-wide IdempotentWrite is granted. The stack's admin principal is a super user (see
``infra/kafka.py``) and needs no entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from schemas import (
    AuditRecorded,
    EventData,
    InputsChanged,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerLost,
    ServerReady,
    ServerStopped,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionProvisioning,
    SessionReady,
    SessionRequested,
    StatusChanged,
    dlq_topic,
)

log = logging.getLogger(__name__)

ADMIN = "admin"
"""The stack's own user: broker-to-controller traffic, topic creation, ACLs, tests."""

PRINCIPAL_PREFIX = "nbembed-"


def principal(user: str) -> str:
    """The Kafka user name of ``user`` (``gateway`` → ``nbembed-gateway``)."""
    return PRINCIPAL_PREFIX + user


@dataclass(frozen=True)
class ServiceAccess:
    """What one service does on Kafka, in events."""

    publishes: tuple[type[EventData], ...]
    consumes: dict[str, tuple[type[EventData], ...]] = field(default_factory=dict)
    """Consumer group id → the events its members handle."""
    dead_letters: dict[str, tuple[type[EventData], ...]] = field(default_factory=dict)
    """Consumer group id → the events whose dead-letter topics its members read."""
    follows: tuple[type[EventData], ...] = ()
    """Events every replica reads without a consumer group (notifications: no DLQ)."""

    def group_topics(self) -> set[str]:
        """The topics of the events its groups handle (each may dead-letter to its .dlq)."""
        return {event.topic for events in self.consumes.values() for event in events}

    def read_topics(self) -> set[str]:
        dead = {dlq_topic(e.topic) for events in self.dead_letters.values() for e in events}
        return self.group_topics() | dead | {event.topic for event in self.follows}

    def write_topics(self) -> set[str]:
        published = {event.topic for event in self.publishes}
        return published | {dlq_topic(topic) for topic in self.group_topics()}

    def groups(self) -> set[str]:
        return set(self.consumes) | set(self.dead_letters)


ACCESS: dict[str, ServiceAccess] = {
    # services/gateway: api.py, saves_api.py, internal_api.py, library_api.py publish,
    # and audit.py (the audit trail); app.py's projection and audit projector consume;
    # dead_letters.py reads the commands' dead letters and publishes their failures;
    # changes.py tells every replica what changed (status.changed, read group-less).
    "gateway": ServiceAccess(
        publishes=(
            ServerWarmRequested,
            SessionRequested,
            SessionEnded,
            NotebookSaved,
            NotebookRenamed,
            NotebookDeleted,
            InputsChanged,
            AuditRecorded,
            SessionFailed,
            NotebookStoreFailed,
            StatusChanged,
        ),
        consumes={
            "nbembed-gateway": (SessionProvisioning, SessionReady, SessionFailed, ServerLost),
            "nbembed-gateway-saves": (NotebookStored, NotebookStoreFailed),
            "nbembed-gateway-audit": (
                ServerWarmRequested,
                SessionRequested,
                SessionEnded,
                ServerStopped,
                SessionProvisioning,
                SessionReady,
                SessionFailed,
                ServerLost,
                NotebookSaved,
                NotebookRenamed,
                NotebookDeleted,
                NotebookStored,
                NotebookStoreFailed,
                AuditRecorded,
            ),
        },
        dead_letters={
            "nbembed-gateway-dead-letters": (SessionRequested, ServerReady, NotebookSaved)
        },
        follows=(StatusChanged,),
    ),
    # services/provisioner: handlers.py and app.py (the hub's notices) publish; app.py
    # consumes.
    "provisioner": ServiceAccess(
        publishes=(ServerReady, SessionProvisioning, SessionFailed, ServerStopped, ServerLost),
        consumes={
            "nbembed-provisioner": (
                ServerWarmRequested,
                SessionRequested,
                SessionEnded,
                ServerStopped,
            )
        },
    ),
    # services/sync: handlers.py publishes; app.py's three groups consume.
    "sync": ServiceAccess(
        publishes=(SessionReady, SessionFailed, NotebookStored, NotebookStoreFailed),
        consumes={
            "nbembed-sync": (ServerReady,),
            "nbembed-sync-saves": (NotebookSaved, NotebookRenamed, NotebookDeleted),
            "nbembed-sync-inputs": (InputsChanged,),
        },
    ),
}
"""The access table: every principal but the admin, and all it may do."""

USERS: tuple[str, ...] = (ADMIN, *ACCESS)
"""Every Kafka user the stack creates, each with a password in ``.run/secrets``."""


class Resource(IntEnum):
    """Kafka's ``ResourceType`` codes (the ones used here)."""

    ANY = 1
    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    """Kafka's ``AclOperation`` codes (the ones used here)."""

    ANY = 1
    READ = 3
    WRITE = 4


ALLOW = 3
ANY_PERMISSION = 1
LITERAL = 3
ANY_PATTERN = 1
ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding on a literal resource name, from any host."""

    principal: str
    resource: Resource
    name: str
    operation: Operation


def acls() -> set[Acl]:
    """Every binding the table implies (READ/WRITE imply DESCRIBE in Kafka)."""
    result: set[Acl] = set()
    for user, access in ACCESS.items():
        who = f"User:{principal(user)}"
        result |= {Acl(who, Resource.TOPIC, t, Operation.READ) for t in access.read_topics()}
        result |= {Acl(who, Resource.TOPIC, t, Operation.WRITE) for t in access.write_topics()}
        result |= {Acl(who, Resource.GROUP, g, Operation.READ) for g in access.groups()}
    return result


async def current_acls(admin: AIOKafkaAdminClient) -> tuple[set[Acl], set[Acl]]:
    """The cluster's bindings for the service principals: (as the table writes them, others).

    "Others" are bindings the table never makes (DENY, prefixed names, one
    host): nobody but an operator by hand made them, and they go.
    """
    response: Any = await admin._send_request(  # aiokafka has no public ACL API
        DescribeAclsRequest(
            Resource.ANY,
            None,  # null: any name
            ANY_PATTERN,
            None,
            None,
            Operation.ANY,
            ANY_PERMISSION,
        )
    )
    _raise_for(response.error_code, response.error_message)
    services = {f"User:{principal(user)}" for user in ACCESS}
    plain: set[Acl] = set()
    others: set[Acl] = set()
    for resource_type, name, pattern, bindings in response.resources:
        for who, host, operation, permission in bindings:
            if who not in services:
                continue
            acl = Acl(who, Resource(resource_type), name, Operation(operation))
            ours = pattern == LITERAL and host == ANY_HOST and permission == ALLOW
            (plain if ours else others).add(acl)
    return plain, others


async def ensure_acls(options: dict[str, Any]) -> tuple[set[Acl], set[Acl]]:
    """Make the cluster's bindings for the service principals equal the table.

    ``options`` are the admin's client options. Returns (created, deleted).
    Idempotent: a second call changes nothing.
    """
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await admin.start()
    try:
        return await _converge(admin)
    finally:
        await admin.close()


async def _converge(admin: AIOKafkaAdminClient) -> tuple[set[Acl], set[Acl]]:
    wanted = acls()
    plain, others = await current_acls(admin)
    deleted = (plain - wanted) | others
    for acl in sorted(deleted):
        await _delete(admin, acl)
    # Deleting matches any host, pattern and permission: re-create what it took.
    created = wanted - (plain - deleted)
    for acl in sorted(created):
        await _create(admin, acl)
    if created or deleted:
        log.info("Kafka ACLs: %d created, %d deleted", len(created), len(deleted))
    return created, deleted


async def _create(admin: AIOKafkaAdminClient, acl: Acl) -> None:
    response: Any = await admin._send_request(
        CreateAclsRequest(
            acl.resource, acl.name, LITERAL, acl.principal, ANY_HOST, acl.operation, ALLOW
        )
    )
    for error_code, error_message in response.creation_responses:
        _raise_for(error_code, error_message)


async def _delete(admin: AIOKafkaAdminClient, acl: Acl) -> None:
    # Matches the binding whatever its host, pattern or permission.
    response: Any = await admin._send_request(
        DeleteAclsRequest(
            acl.resource,
            acl.name,
            ANY_PATTERN,
            acl.principal,
            None,  # null: any host
            acl.operation,
            ANY_PERMISSION,
        )
    )
    for error_code, error_message, _matches in response.filter_responses:
        _raise_for(error_code, error_message)


def _raise_for(error_code: int, message: str | None) -> None:
    if error_code != 0:
        raise RuntimeError(f"Kafka ACL request failed: error {error_code}: {message}")
