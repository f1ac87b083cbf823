"""The gateway's outbox: a record and the events it promises are written as one document.

Why an outbox and not "publish first": a published command cannot be taken
back, so publishing before the record exists means a consumer may act on a
session or save the gateway then fails to record (the store is down), and the
host never learns its id. The store has no multi-document transactions
(FerretDB 1.24), but a single document is written atomically: each record
(session, save, notebook) therefore carries its events in an ``outbox``
field, set in the same write that creates or changes the record. Once that
write is durable the events *will* be published, whatever happens to this
process or to Kafka, so the gateway may answer 202.

Publishing then happens at once, in the request, bounded in time. When the
publish fails or the process dies first, the events are still owed; a retried
request with the same ``Idempotency-Key`` publishes them, and so does the relay.

What is still owed is said by a small marker beside the record
(``gateway_outbox``, ``_id`` = collection/record id), never by rewriting the
record: every write that adds outbox entries also adds their ids to the
marker (with a fresh token), and a delivery that published them deletes the
marker *with that token* (a newer write's marker survives). The record keeps
its entries as the record of what it published. Why not clear them from the
record: FerretDB 1.x applies an update by reading the document, changing it
and writing the whole document back, with nothing stopping a second writer in
between, so a clearing write racing the projection's status change undid it
(a save stored by sync stayed ``pending`` for ever). After its creation a
record is written only by the projection and by the host's own later requests
(an end, a rename), never by its own delivery.

The marker collection holds only records in flight, so the relay reads all of
it every second or so and republishes the entries each marker lists. Markers
are written beside the record (concurrently); a marker listing nothing its
record holds is simply deleted, and a record whose marker write failed was
answered with an error (retried with its key, it completes).

Every entry keeps its CloudEvent id and time, so a republished event is the
same event: consumers are idempotent, and the audit trail keys records by
event id. Entries are published in the order they were written (a session's
``ended`` never overtakes its ``requested``). An entry of kind ``inputs`` is a
state, not a command: its event is computed when it is published (the user's
``inputs/`` folder as it must be *now*), so a late republish never restores an
older folder.

While Kafka is known to be down (a publish just failed and neither the
relay's ping nor a later publish has succeeded since), writes are refused
with 503 and ``Retry-After`` before anything is recorded: a host is never
told "accepted" for work that would wait an unknown time. Every 202 given
before is completed by the relay once the broker answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from schemas import ALL_EVENTS, CloudEvent, EventData
from services.common import tracing
from services.common.kafka import publish_event
from services.common.mongo import upsert

log = logging.getLogger(__name__)

Document = dict[str, Any]
Entries = dict[str, Document]
"""Outbox entries of one record, by entry id (the id of the event they publish)."""

FIELD = "outbox"
"""The record field holding its entries (published or not: the marker says which)."""
MARKERS = "gateway_outbox"
"""The collection of markers: one per record with pending entries."""
EVENT_MODELS: dict[str, type[EventData]] = {model.event_type: model for model in ALL_EVENTS}

Renderer = Callable[[str, Document], Awaitable[CloudEvent[Any]]]
"""Builds the event of a state entry (kind other than ``event``) when it is published."""
Hook = Callable[[Document], Awaitable[None]]
"""Work the relay finishes for a record before republishing its entries."""


@dataclass(frozen=True)
class Hold:
    """A record's relay marker as one write left it: its token, and what it listed before."""

    token: str
    listed: frozenset[str] | None
    """Ids of entries the marker listed before this write (maybe still unpublished); None
    for a marker of an older version, which listed nothing: all the record's entries."""

    def pick(self, entries: Entries) -> Entries:
        """Those of a record's ``entries`` that earlier writes may not have published."""
        if self.listed is None:
            return dict(entries)
        return {entry_id: e for entry_id, e in entries.items() if entry_id in self.listed}


class BrokerUnavailable(Exception):
    """Kafka does not take events now: the request is refused (503) before it is recorded."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Kafka is unavailable; retry after {retry_after} s")
        self.retry_after = retry_after


def event_entry(event: CloudEvent[Any]) -> Entries:
    """An outbox entry that publishes ``event`` itself (same id, time, data and trace).

    The trace context is the request's: the relay's republish, whenever it
    happens, stays in the trace of the request that recorded the event.
    """
    event = tracing.stamp(event)
    return {
        event.id: {
            "kind": "event",
            "seq": time.time_ns(),
            "time": event.time.isoformat(),
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "data": event.data.model_dump(mode="json"),
            **_trace_fields(event.traceparent, event.tracestate),
        }
    }


def _trace_fields(traceparent: str | None, tracestate: str | None) -> Document:
    fields = {"traceparent": traceparent, "tracestate": tracestate}
    return {name: value for name, value in fields.items() if value}


def state_entry(kind: str, **fields: Any) -> Entries:
    """An outbox entry whose event is computed when published (see the module's docstring)."""
    trace = tracing.carrier()
    fields |= _trace_fields(trace.get("traceparent"), trace.get("tracestate"))
    return {uuid.uuid4().hex: {"kind": kind, "seq": time.time_ns(), **fields}}


def as_fields(entries: Entries) -> Document:
    """``$set`` fields adding ``entries`` to a record's outbox."""
    return {f"{FIELD}.{entry_id}": entry for entry_id, entry in entries.items()}


def ordered(entries: Entries) -> list[tuple[str, Document]]:
    """Entries in the order they were written (``seq``: nanoseconds at creation)."""
    return sorted(entries.items(), key=lambda item: int(item[1]["seq"]))


def rebuild(entry_id: str, entry: Document) -> CloudEvent[Any]:
    """The event an ``event`` entry stands for, identical to the one first published."""
    model = EVENT_MODELS[entry["type"]]
    return CloudEvent[model].model_validate(  # type: ignore[valid-type]
        {
            "id": entry_id,
            "source": entry["source"],
            "type": entry["type"],
            "time": entry["time"],
            "subject": entry.get("subject"),
            "data": model.model_validate(entry["data"]),
        }
    )


class BrokerState:
    """Whether Kafka is known to be down: set by a failed publish, cleared by a ping."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.down_since: float | None = None

    def check(self) -> None:
        """Refuse new work while Kafka is known to be down.

        After ``retry_after`` seconds one request at a time is let through to
        try (its record is written first, so its 202 holds either way): Kafka's
        return is noticed by that publish even if the relay's ping missed it.
        """
        if self.down_since is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self.down_since < self.retry_after:
            raise BrokerUnavailable(self.retry_after)
        self.down_since = now  # this one tries; the others wait again

    def failed(self) -> None:
        if self.down_since is None:
            log.error("Kafka unavailable: refusing writes until it answers")
        self.down_since = asyncio.get_running_loop().time()

    def answered(self) -> None:
        if self.down_since is not None:
            log.warning("Kafka answers again: relaying pending events")
        self.down_since = None


class Outbox:
    """Publishes records' pending events now, or later through the relay."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: str,
        broker: KafkaBroker,
        *,
        publish_seconds: float,
        relay_seconds: float,
        retry_after: int,
    ) -> None:
        self._db = client[database]
        self._markers: AsyncCollection[Document] = self._db[MARKERS]
        self._broker = broker
        self._publish_seconds = publish_seconds
        self._relay_seconds = relay_seconds
        # Entries younger than this are their request's to publish, not the relay's.
        self._grace = timedelta(seconds=publish_seconds + 2 * relay_seconds)
        self.kafka = BrokerState(retry_after)
        self._renderers: dict[str, Renderer] = {}
        self._hooks: dict[str, Hook] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def render(self, kind: str, renderer: Renderer) -> None:
        """Build events of state entries of ``kind`` with ``renderer``."""
        self._renderers[kind] = renderer

    def before_relay(self, collection: str, hook: Hook) -> None:
        """Run ``hook`` on a record of ``collection`` before the relay republishes its entries."""
        self._hooks[collection] = hook

    async def hold(self, collection: str, record_id: str, entries: Entries) -> Hold:
        """Mark ``entries`` of a record as owed; the marker's token and what it listed before."""
        listing: Document = (
            {"$addToSet": {"entries": {"$each": list(entries)}}}
            if entries
            else {"$setOnInsert": {"entries": []}}
        )
        token = uuid.uuid4().hex
        update = {
            "$set": {
                "collection": collection,
                "record_id": record_id,
                "token": token,
                "at": datetime.now(UTC),
            },
            **listing,
        }
        marker = {"_id": f"{collection}/{record_id}"}
        # Another write of the same record (the server's report and the SDK's of one
        # Jupyter save, on two replicas) may insert the marker at the same moment. Raising
        # then would leave this request's record written and its events never published
        # (the caller would take the record as the other write's): a 202 leading nowhere.
        before = await upsert(
            lambda: self._markers.find_one_and_update(
                marker, update, upsert=True, return_document=ReturnDocument.BEFORE
            )
        )
        return Hold(token, _listed(before))

    async def deliver(self, collection: str, record_id: str, entries: Entries, hold: Hold) -> bool:
        """Publish ``entries`` in order, each bounded in time; then release the marker.

        True when all were published now. On a failure the marker stays (the
        relay publishes them once Kafka answers) and new writes are refused
        until then; the caller's request already stands.
        """
        for entry_id, entry in ordered(entries):
            event = await self._event(entry_id, entry)  # a store error propagates
            try:
                async with asyncio.timeout(self._publish_seconds):
                    await publish_event(self._broker, event)
            except Exception as exc:
                self.kafka.failed()
                log.warning(
                    "publish failed, left to the relay",
                    extra={"record": f"{collection}/{record_id}", "error": repr(exc)},
                )
                return False
        if entries:
            self.kafka.answered()
        self._spawn(self._release(collection, record_id, hold.token))
        return True

    async def _event(self, entry_id: str, entry: Document) -> CloudEvent[Any]:
        if entry["kind"] == "event":
            event = rebuild(entry_id, entry)
        else:
            event = await self._renderers[entry["kind"]](entry_id, entry)
        return tracing.with_context(event, entry)  # the recording request's trace

    async def _release(self, collection: str, record_id: str, token: str) -> None:
        """Delete the record's marker unless a newer write holds it (its token differs)."""
        await self._markers.delete_one({"_id": f"{collection}/{record_id}", "token": token})

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as exc:  # the relay clears it later (a harmless republish)
                log.warning("clearing the outbox failed", extra={"error": repr(exc)})

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def relay_once(self, *, everything: bool = False) -> bool:
        """Republish the pending entries of every marked record; False if a publish failed.

        Records marked within the grace period are left to their request unless
        ``everything``. Stops at the first failed publish (Kafka is down).
        """
        cutoff = datetime.now(UTC) - self._grace
        markers = [marker async for marker in self._markers.find({})]
        for marker in sorted(markers, key=lambda m: m["at"]):
            if not everything and marker["at"] > cutoff:
                continue
            if not await self._relay(marker):
                return False
        return True

    async def _relay(self, marker: Document) -> bool:
        """Publish what a marker lists that its record holds; release it either way."""
        collection, record_id = marker["collection"], marker["record_id"]
        hold = Hold(marker["token"], _listed(marker))
        record = await self._db[collection].find_one({"_id": record_id})
        entries = hold.pick((record or {}).get(FIELD) or {})
        if record is not None and entries:
            if hook := self._hooks.get(collection):
                await hook(record)
            log.info("publishing pending events", extra={"record": f"{collection}/{record_id}"})
            return await self.deliver(collection, record_id, entries, hold)
        await self._release(collection, record_id, hold.token)
        return True

    async def run_relay(self) -> None:
        """Forever: while Kafka is down, ping it; otherwise relay what is left pending."""
        while True:
            await asyncio.sleep(self._relay_seconds)
            try:
                if self.kafka.down_since is not None:
                    if not await self._broker.ping(timeout=self._publish_seconds):
                        continue
                    # Everything pending first, while new writes are still refused:
                    # nothing recorded later can overtake it.
                    if await self.relay_once(everything=True):
                        self.kafka.answered()
                else:
                    await self.relay_once()
            except Exception as exc:  # the store may be down: try again next round
                log.warning("outbox relay round failed", extra={"error": repr(exc)})

    async def aclose(self) -> None:
        """Let clearing tasks finish at shutdown (cancelled after 2 s: the relay clears them)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _listed(marker: Document | None) -> frozenset[str] | None:
    """What a marker lists: nothing if there is none; None (everything) if it is an old one."""
    if marker is None:
        return frozenset()
    listed = marker.get("entries")
    return None if listed is None else frozenset(listed)
