"""The gateway's outbox and its dead-letter mapping, against in-memory fakes of the store and Kafka.

The real flow (the real store, Kafka stopped and started) is in
tests/stack/test_outbox.py, tests/stack/test_dead_letters.py and
tests/faults/test_broker_down.py.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from infra import dlq
from schemas import (
    CloudEvent,
    NotebookSaved,
    NotebookStoreFailed,
    SessionEnded,
    SessionFailed,
    SessionRequested,
)
from schemas.dead_letters import REPLAYED_FROM, DeadLetter
from services.common import kafka as common_kafka
from services.gateway.dead_letters import DeadLetters
from services.gateway.outbox import (
    MARKERS,
    BrokerUnavailable,
    Outbox,
    event_entry,
    ordered,
    rebuild,
    state_entry,
)

Doc = dict[str, Any]


class FakeCollection:
    """The few collection calls the outbox makes, on dicts; counts the writes."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.writes = 0

    def _matches(self, doc: Doc, query: Doc) -> bool:
        return all(doc.get(k) == v for k, v in query.items())

    async def find_one(self, query: Doc) -> Doc | None:
        doc = self.docs.get(query["_id"])
        return copy.deepcopy(doc) if doc is not None and self._matches(doc, query) else None

    async def find_one_and_update(
        self,
        query: Doc,
        update: Doc,
        upsert: bool = False,
        return_document: ReturnDocument = ReturnDocument.BEFORE,
    ) -> Doc | None:
        self.writes += 1
        doc = self.docs.get(query["_id"])
        before = copy.deepcopy(doc)
        if doc is None:
            if not upsert:
                return None
            doc = self.docs[query["_id"]] = {"_id": query["_id"]}
            doc.update(copy.deepcopy(update.get("$setOnInsert", {})))
        doc.update(copy.deepcopy(update.get("$set", {})))
        for field, spec in update.get("$addToSet", {}).items():
            values = doc.setdefault(field, [])
            values.extend(v for v in spec["$each"] if v not in values)
        return before if return_document is ReturnDocument.BEFORE else copy.deepcopy(doc)

    async def delete_one(self, query: Doc) -> None:
        self.writes += 1
        doc = self.docs.get(query["_id"])
        if doc is not None and self._matches(doc, query):
            del self.docs[query["_id"]]

    async def find(self, query: Doc) -> AsyncIterator[Doc]:
        assert query == {}
        for doc in list(self.docs.values()):
            yield copy.deepcopy(doc)


class FakeDatabase(dict[str, FakeCollection]):
    def __missing__(self, name: str) -> FakeCollection:
        self[name] = FakeCollection()
        return self[name]


class FakeBroker:
    """Records what is published; fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(
        self, value: bytes, *, topic: str, key: bytes, headers: dict[str, str]
    ) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.published.append((topic, value, headers))

    async def ping(self, timeout: float) -> bool:
        return not self.down

    def ids(self) -> list[str]:
        return [headers["ce_id"] for _, _, headers in self.published]


def _outbox(database: FakeDatabase, broker: FakeBroker) -> Outbox:
    return Outbox(
        {"db": database},  # type: ignore[arg-type]
        "db",
        broker,  # type: ignore[arg-type]
        publish_seconds=0.5,
        relay_seconds=0.01,
        retry_after=7,
    )


@pytest.fixture
def parts() -> tuple[Outbox, FakeDatabase, FakeBroker]:
    database = FakeDatabase()
    broker = FakeBroker()
    return _outbox(database, broker), database, broker


def _requested(session_id: str = "s1") -> CloudEvent[SessionRequested]:
    data = SessionRequested(
        session_id=session_id, tenant_id="demo", hub_user="demo-u", host_user_id="u"
    )
    return CloudEvent.wrap(data, source="/test", subject=session_id)


def _ended(session_id: str = "s1") -> CloudEvent[SessionEnded]:
    data = SessionEnded(session_id=session_id, tenant_id="demo", hub_user="demo-u")
    return CloudEvent.wrap(data, source="/test", subject=session_id)


def test_an_entry_publishes_the_very_event_it_was_made_from() -> None:
    event = _requested()
    ((entry_id, entry),) = event_entry(event).items()
    assert rebuild(entry_id, copy.deepcopy(entry)) == event


def test_entries_are_published_in_the_order_they_were_written() -> None:
    first, second = event_entry(_requested()), event_entry(_ended())
    assert [i for i, _ in ordered({**second, **first})] == [*first, *second]


def _record(database: FakeDatabase, entries: Doc) -> None:
    """A session record as the gateway writes it: its events in its outbox."""
    database["sessions"].docs["s1"] = {"_id": "s1", "outbox": copy.deepcopy(entries)}


async def test_delivered_entries_release_their_marker_and_never_rewrite_the_record(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    """FerretDB 1.x rewrites a whole document per update: an outbox write racing the
    projection's status change could undo it, so the outbox never writes a record."""
    outbox, database, broker = parts
    entries = event_entry(_requested()) | event_entry(_ended())
    _record(database, entries)
    hold = await outbox.hold("sessions", "s1", entries)

    assert await outbox.deliver("sessions", "s1", entries, hold)
    await outbox.aclose()  # lets the release finish
    assert await outbox.relay_once(everything=True)

    assert broker.ids() == list(entries)  # same ids, same order, once
    assert database[MARKERS].docs == {}
    assert database["sessions"].writes == 0
    assert database["sessions"].docs["s1"]["outbox"] == entries  # what it published


async def test_a_newer_writes_marker_survives_an_older_delivery_and_the_relay_sends_its_events(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    first, second = event_entry(_requested()), event_entry(_ended())
    _record(database, first | second)
    older = await outbox.hold("sessions", "s1", first)
    newer = await outbox.hold("sessions", "s1", second)
    assert newer.pick(first | second) == first  # the newer write learns what may be owed

    assert await outbox.deliver("sessions", "s1", first, older)
    await outbox.aclose()
    assert "sessions/s1" in database[MARKERS].docs  # the newer write holds it
    assert await outbox.relay_once(everything=True)
    await outbox.aclose()
    assert set(second) <= set(broker.ids()[1:])
    assert database[MARKERS].docs == {}


class RacedMarkers(FakeCollection):
    """The first upsert loses a race: another write inserted the marker meanwhile."""

    def __init__(self, theirs: list[str]) -> None:
        super().__init__()
        self.theirs = theirs

    async def find_one_and_update(  # type: ignore[override]
        self, query: Doc, update: Doc, upsert: bool = False, **kwargs: Any
    ) -> Doc | None:
        if self.theirs:
            self.docs[query["_id"]] = {"_id": query["_id"], "entries": self.theirs, "token": "t"}
            self.theirs = []
            raise DuplicateKeyError("E11000 duplicate key error")
        return await super().find_one_and_update(query, update, upsert, **kwargs)


async def test_a_marker_upsert_that_loses_a_race_still_holds_and_delivers_its_entries() -> None:
    """The server's report and the SDK's of one Jupyter save, on two replicas: one wrote
    the save, the other the marker first. Before, the save's writer took the marker's
    DuplicateKeyError for "the other write won" and never published: a save pending for
    ever (CI, tests/browser/test_restricted.py and test_restore_reload.py)."""
    database, broker = FakeDatabase(), FakeBroker()
    database[MARKERS] = RacedMarkers(theirs=["their-entry"])
    outbox = _outbox(database, broker)
    entries = event_entry(_requested())
    _record(database, entries)

    hold = await outbox.hold("sessions", "s1", entries)
    assert await outbox.deliver("sessions", "s1", entries, hold)
    await outbox.aclose()

    assert broker.ids() == list(entries)
    assert database[MARKERS].docs == {}  # our token was the marker's last: released


async def test_the_relay_sends_only_what_the_marker_lists(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    """A record's events published long ago are never sent again with a new write's."""
    outbox, database, broker = parts
    published, owed = event_entry(_requested()), event_entry(_ended())
    _record(database, published | owed)
    await outbox.hold("sessions", "s1", owed)
    assert await outbox.relay_once(everything=True)
    await outbox.aclose()
    assert broker.ids() == list(owed)


async def test_a_marker_of_an_older_version_owes_every_entry_of_its_record(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    entries = event_entry(_requested()) | event_entry(_ended())
    _record(database, entries)
    database[MARKERS].docs["sessions/s1"] = {
        "_id": "sessions/s1",
        "collection": "sessions",
        "record_id": "s1",
        "token": "old",
        "at": datetime.now(UTC) - timedelta(minutes=1),
    }
    assert await outbox.relay_once()
    await outbox.aclose()
    assert broker.ids() == list(entries)
    assert database[MARKERS].docs == {}


async def test_while_kafka_is_down_entries_wait_new_writes_are_refused_and_the_relay_completes(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    entries = event_entry(_requested())
    _record(database, entries)
    hold = await outbox.hold("sessions", "s1", entries)
    broker.down = True

    assert not await outbox.deliver("sessions", "s1", entries, hold)
    assert "sessions/s1" in database[MARKERS].docs  # still promised
    with pytest.raises(BrokerUnavailable) as refused:
        outbox.kafka.check()
    assert refused.value.retry_after == 7
    # After Retry-After one request may try again (its record holds its 202 either way).
    assert outbox.kafka.down_since is not None
    outbox.kafka.down_since -= 8
    outbox.kafka.check()
    with pytest.raises(BrokerUnavailable):
        outbox.kafka.check()

    # A young marker is its request's, not the relay's...
    assert await outbox.relay_once()
    assert broker.published == []
    # ...but once Kafka answers, everything pending goes, then writes are accepted.
    broker.down = False
    database[MARKERS].docs["sessions/s1"]["at"] = datetime.now(UTC) - timedelta(minutes=1)
    assert await outbox.relay_once(everything=True)
    await outbox.aclose()
    assert broker.ids() == list(entries)
    assert database[MARKERS].docs == {}
    assert database["sessions"].writes == 0


async def test_the_relay_clears_markers_of_records_with_nothing_pending(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    # The record's write failed after its marker.
    await outbox.hold("sessions", "gone", event_entry(_requested("gone")))
    assert await outbox.relay_once(everything=True)
    assert database[MARKERS].docs == {} and broker.published == []


async def test_a_state_entry_is_computed_when_it_is_published(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    now = {"name": "old"}

    async def render(entry_id: str, entry: Doc) -> CloudEvent[Any]:
        data = SessionFailed.model_validate(
            {
                "session_id": "s1",
                "tenant_id": "demo",
                "hub_user": entry["hub_user"],
                "code": "internal",
                "reason": now["name"],
            }
        )
        return CloudEvent[SessionFailed](id=entry_id, source="/t", type=data.event_type, data=data)

    outbox.render("state", render)
    entries = state_entry("state", hub_user="demo-u")
    _record(database, entries)
    now["name"] = "new"
    hold = await outbox.hold("sessions", "s1", entries)
    assert await outbox.deliver("sessions", "s1", entries, hold)
    assert b'"reason":"new"' in broker.published[0][1]
    assert broker.ids() == list(entries)


class FakeRecords:
    def __init__(self, docs: dict[str, Doc]) -> None:
        self.docs = docs

    async def get_any(self, doc_id: str) -> Doc | None:
        return self.docs.get(doc_id)


class FakeMessage:
    """What `services.common.kafka.dead_letter` reads of a consumed message."""

    def __init__(self, event: CloudEvent[Any], topic: str) -> None:
        self.body = event.kafka_value()
        self.headers = event.kafka_headers()
        self.raw_message = type(
            "Raw",
            (),
            {
                "topic": topic,
                "partition": 3,
                "offset": 41,
                "key": event.kafka_key(),
                "value": self.body,
            },
        )()


async def _dead_letter(event: CloudEvent[Any], group: str) -> DeadLetter:
    """A dead letter exactly as a worker's consumer writes it."""
    broker = FakeBroker()
    await common_kafka.dead_letter(
        broker,  # type: ignore[arg-type]
        FakeMessage(event, event.data.topic),  # type: ignore[arg-type]
        group_id=group,
        reason="RuntimeError: hub said 500",
        attempts=5,
    )
    ((topic, value, headers),) = broker.published
    return DeadLetter.of(topic, 0, 9, event.kafka_key(), value, headers)


async def test_a_dead_lettered_session_request_fails_its_session_with_a_reason() -> None:
    letter = await _dead_letter(_requested("s1"), "nbembed-provisioner")
    assert (letter.source, letter.attempts) == (("nbembed.sessions", 3, 41), 5)
    assert letter.reason == "RuntimeError: hub said 500" and letter.time
    broker = FakeBroker()
    session = {"_id": "s1", "tenant_id": "demo", "hub_user": "demo-u", "status": "provisioning"}
    mapper = DeadLetters(
        broker,  # type: ignore[arg-type]
        FakeRecords({"s1": session}),  # type: ignore[arg-type]
        FakeRecords({}),  # type: ignore[arg-type]
        own_groups={"nbembed-gateway", "nbembed-gateway-audit"},
    )

    event = await mapper.handle(letter)
    assert event is not None and isinstance(event.data, SessionFailed)
    assert (event.data.session_id, event.data.code) == ("s1", "internal")
    assert "starting the user's Jupyter server after 5 attempt(s)" in event.data.reason
    assert "hub said 500" in event.data.reason and "nbembed.sessions.dlq" in event.data.reason
    # Handled twice (a redelivery), it is the same event.
    again = await mapper.handle(letter)
    assert again is not None and again.id == event.id
    # The gateway's own groups' dead letters fail nothing; nor does a final session.
    assert (
        await mapper.handle(await _dead_letter(_requested("s1"), "nbembed-gateway-audit")) is None
    )
    session["status"] = "ready"
    assert await mapper.handle(letter) is None


async def test_a_dead_lettered_save_fails_the_save_and_other_commands_fail_nothing() -> None:
    saved = NotebookSaved(
        save_id="v1",
        tenant_id="demo",
        notebook_id="n1",
        hub_user="demo-u",
        path="w/a.ipynb",
        origin="host",
    )
    letter = await _dead_letter(CloudEvent.wrap(saved, source="/t"), "nbembed-sync-saves")
    save = {"_id": "v1", "tenant_id": "demo", "notebook_id": "n1", "status": "pending"}
    mapper = DeadLetters(
        FakeBroker(),  # type: ignore[arg-type]
        FakeRecords({}),  # type: ignore[arg-type]
        FakeRecords({"v1": save}),  # type: ignore[arg-type]
        own_groups=set(),
    )
    event = await mapper.handle(letter)
    assert event is not None and isinstance(event.data, NotebookStoreFailed)
    assert (event.data.save_id, event.data.code) == ("v1", "internal")
    assert await mapper.handle(await _dead_letter(_ended("s1"), "nbembed-provisioner")) is None


async def test_a_replayed_dead_letter_is_the_original_message_with_where_it_came_from() -> None:
    event = _requested("s1")
    letter = await _dead_letter(event, "nbembed-provisioner")
    headers = letter.replay_headers()
    assert headers == event.kafka_headers() | {REPLAYED_FROM: "nbembed.sessions.dlq:0:9"}
    assert letter.value == event.kafka_value() and letter.key == event.kafka_key()
    assert dlq.dlq_name("nbembed.sessions") == dlq.dlq_name("nbembed.sessions.dlq")
