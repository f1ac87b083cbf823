"""Dead-lettered commands end their session or save as ``failed``, with a reason.

A worker that gives up on a command (after its retries) copies it to the
topic's ``.dlq`` and moves on; without this, the session would stay
``provisioning`` and the save ``pending`` forever. The gateway reads the
dead-letter topics of the commands a host waits on, in a consumer group of its
own, and publishes the outcome the worker never did: ``session.failed`` or
``notebook.store_failed`` with code ``internal`` and a reason written for a
host developer. Publishing it (rather than writing the record here) keeps one
path for outcomes: every gateway replica's projection and the audit trail see
it like any other failure.

Which dead letters count: those of the workers doing the command (the
provisioner for ``session.requested``, sync for ``server.ready`` and
``notebook.saved``). The gateway's own groups also dead-letter what *they*
fail to handle (the projection, the audit trail), but there the work itself
went on, so nothing is failed for them. Each outcome's event id derives from
the dead letter's position, so handling one twice publishes the same event.
A dead letter this consumer cannot handle now (the store is down) is retried
after a pause, never dead-lettered again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter

from schemas import (
    CloudEvent,
    NotebookSaved,
    NotebookStoreFailed,
    ServerReady,
    SessionFailed,
    SessionRequested,
    dlq_topic,
)
from schemas.dead_letters import DeadLetter
from services.common.kafka import publish_event
from services.gateway.store import SAVE_STATUSES, SESSION_FINAL, SaveStore, SessionStore

log = logging.getLogger(__name__)

SOURCE = "/nbembed/gateway/dead-letters"
NAMESPACE = uuid.UUID("9a3e7c10-4b5d-4f2e-8c6a-1d2b3e4f5a60")
REASON_CHARS = 400
"""Of the worker's error, quoted in the reason (a host developer reads it, not a log)."""

COMMANDS = {
    SessionRequested.event_type: "starting the user's Jupyter server",
    ServerReady.event_type: "putting the notebook on the user's server",
    NotebookSaved.event_type: "storing the saved notebook",
}
"""The commands whose dead letters fail a session or a save, and what each was doing."""
TOPICS = tuple(
    dict.fromkeys(dlq_topic(m.topic) for m in (SessionRequested, ServerReady, NotebookSaved))
)
"""The dead-letter topics this consumer reads."""

OUTCOMES: dict[type[Any], str] = {
    SessionFailed: "session_failed",
    NotebookStoreFailed: "save_failed",
}
DEAD_LETTERS_READ = Counter(
    "nbembed_dead_letters_read",
    "Dead letters of the commands hosts wait on, read by the gateway, by dead-letter topic "
    "and what became of them (session_failed, save_failed, or ignored: already final, or "
    "the gateway's own).",
    ["topic", "outcome"],
)


def reason_for(letter: DeadLetter) -> str:
    """What a host developer reads: what failed, how often, the error, what to do."""
    error = letter.reason[:REASON_CHARS] or "no reason recorded"
    what = COMMANDS.get(letter.event_type or "", "handling it")
    tried = f"after {letter.attempts} attempt(s)" if letter.attempts else "(unreadable command)"
    return (
        f"nbembed gave up {what} {tried}: {error}. "
        "Try again; if it keeps failing, give the operator this dead letter "
        f"({letter.topic} partition {letter.partition} offset {letter.offset})."
    )


class DeadLetters:
    """Maps each dead-lettered command to its session or save and publishes its failure."""

    def __init__(
        self,
        broker: KafkaBroker,
        sessions: SessionStore,
        saves: SaveStore,
        *,
        own_groups: set[str],
        retry_seconds: float = 2.0,
    ) -> None:
        self._broker = broker
        self._sessions = sessions
        self._saves = saves
        self._own_groups = own_groups
        self._retry_seconds = retry_seconds

    def attach(self, group_id: str, heartbeat_interval_ms: int) -> None:
        """Subscribe to the commands' dead-letter topics in ``group_id``."""
        self._broker.subscriber(
            *TOPICS,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )(self._consume)

    async def _consume(self, msg: KafkaMessage) -> None:
        raw: Any = msg.raw_message
        letter = DeadLetter.of(
            raw.topic, raw.partition, raw.offset, raw.key, msg.body, dict(msg.headers)
        )
        try:
            event = await self.handle(letter)
        except Exception as exc:
            log.warning(
                "dead letter not handled yet, retrying",
                extra={"topic": letter.topic, "offset": letter.offset, "error": repr(exc)},
            )
            await asyncio.sleep(self._retry_seconds)
            raise  # NACK: the offset stays, the dead letter comes back
        outcome = "ignored" if event is None else OUTCOMES[type(event.data)]
        DEAD_LETTERS_READ.labels(letter.topic, outcome).inc()

    async def handle(self, letter: DeadLetter) -> CloudEvent[Any] | None:
        """Publish the failure ``letter`` means, if any; returns the event published."""
        if letter.event_type not in COMMANDS or letter.consumer_group in self._own_groups:
            return None
        if letter.event_type == NotebookSaved.event_type:
            return await self._fail_save(letter)
        return await self._fail_session(letter)

    def _event_id(self, letter: DeadLetter) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{letter.topic}:{letter.partition}:{letter.offset}"))

    async def _fail_session(self, letter: DeadLetter) -> CloudEvent[Any] | None:
        session_id = letter.field("session_id") or letter.subject
        doc = await self._sessions.get_any(session_id) if session_id else None
        if doc is None or doc["status"] in SESSION_FINAL:
            return None
        failed = SessionFailed.model_validate(
            {
                "session_id": doc["_id"],
                "tenant_id": doc["tenant_id"],
                "hub_user": doc["hub_user"],
                "code": "internal",
                "reason": reason_for(letter),
            }
        )
        event = CloudEvent[SessionFailed](
            id=self._event_id(letter),
            source=SOURCE,
            type=failed.event_type,
            subject=doc["_id"],
            data=failed,
        )
        await publish_event(self._broker, event)
        log.error("session failed by a dead letter", extra={"session_id": doc["_id"]})
        return event

    async def _fail_save(self, letter: DeadLetter) -> CloudEvent[Any] | None:
        save_id = letter.field("save_id")
        doc = await self._saves.get_any(save_id) if save_id else None
        if doc is None or doc["status"] != SAVE_STATUSES[0]:
            return None
        failed = NotebookStoreFailed(
            tenant_id=doc["tenant_id"],
            notebook_id=doc["notebook_id"],
            save_id=doc["_id"],
            code="internal",
            reason=reason_for(letter),
        )
        event = CloudEvent[NotebookStoreFailed](
            id=self._event_id(letter), source=SOURCE, type=failed.event_type, data=failed
        )
        await publish_event(self._broker, event)
        log.error("save failed by a dead letter", extra={"save_id": doc["_id"]})
        return event
