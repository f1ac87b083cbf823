"""Status changes cross gateway replicas: each replica's waiters wake within milliseconds.

A host's long-poll or event stream waits in whichever replica its request
reached, but each status event is consumed by one replica of the group (the
one that owns its partition). That replica's store write wakes its own
waiters (`ChangeNotifier`) and, through this feed, publishes a tiny
`StatusChanged` after the write; every replica reads that topic without a
consumer group, from its latest offset, and wakes its own waiters on the id.
They read the store again, so none is woken before the change is visible,
and a replica that was down has nothing to replay. MongoDB-compatible change
streams would do the same but FerretDB has none.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber

from schemas import CloudEvent, StatusChanged
from services.common.kafka import publish_event
from services.gateway.store import ChangeNotifier

log = logging.getLogger(__name__)

SOURCE = "/nbembed/gateway/changes"


class ChangeFeed:
    """Publishes this replica's changes and wakes this replica on the others'."""

    def __init__(self, broker: KafkaBroker, notifiers: dict[str, ChangeNotifier]) -> None:
        """``notifiers``: by `StatusChanged.kind` ("session", "save"), this replica's."""
        self._broker = broker
        self._notifiers = notifiers
        # Tells this replica's own announcements apart (it has woken its waiters already).
        self.source = f"{SOURCE}/{uuid.uuid4().hex}"
        self._sending: set[asyncio.Task[None]] = set()
        self._subscriber: LogicSubscriber[object] | None = None
        for kind, notifier in notifiers.items():
            notifier.relay = lambda key, kind=kind: self._announce(kind, key)

    def attach(self) -> None:
        """Read the topic in every partition, in no group, from the end, committing nothing."""
        self._subscriber = self._broker.subscriber(
            StatusChanged.topic,
            group_id=None,
            auto_offset_reset="latest",
            ack_policy=AckPolicy.MANUAL,  # no group: nothing to commit, nothing to replay
        )
        self._subscriber(self._on_message)

    async def started(self, timeout: float = 30) -> None:
        """Wait until the reader's position in each partition is fixed (after broker.start).

        From then on no change is missed: a replica reports ready only after this.
        """
        consumer = self._subscriber.consumer if self._subscriber is not None else None
        if consumer is None:
            raise RuntimeError("the change feed is not attached or the broker not started")
        async with asyncio.timeout(timeout):
            while True:  # aiokafka assigns every partition once it has the metadata
                if consumer.assignment():
                    break
                await asyncio.sleep(0.05)
            for partition in consumer.assignment():
                await consumer.position(partition)

    def _announce(self, kind: str, key: str) -> None:
        # Called right after the store write: publishing in the background keeps the
        # projection's handler as fast as before; a lost announcement costs the other
        # replicas' waiters their timeout (they read the store then), nothing else.
        event = CloudEvent.wrap(StatusChanged(kind=kind, id=key), source=self.source)
        task = asyncio.get_running_loop().create_task(publish_event(self._broker, event))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("status change not announced", extra={"error": repr(error)})

    async def _on_message(self, msg: KafkaMessage) -> None:
        if msg.headers.get("ce_source") == self.source:
            return
        try:
            event = CloudEvent.from_kafka(StatusChanged, msg.headers, msg.body)
        except ValueError as exc:
            log.warning("ignored an invalid status change", extra={"error": str(exc)})
            return
        self._notifiers[event.data.kind].wake(event.data.id)

    async def aclose(self) -> None:
        """Let announcements in flight finish (before the broker stops)."""
        if self._sending:
            await asyncio.wait(self._sending, timeout=5)
