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
    """The few collection calls the outbox makes, on dicts."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}

    def _matches(self, doc: Doc, query: Doc) -> bool:
        return all(doc.get(k) == v for k, v in query.items())

    async def find_one(self, query: Doc) -> Doc | None:
        doc = self.docs.get(query["_id"])
        return copy.deepcopy(doc) if doc is not None and self._matches(doc, query) else None

    async def update_one(self, query: Doc, update: Doc, upsert: bool = False) -> None:
        doc = self.docs.get(query["_id"])
        if doc is None and upsert:
            doc = self.docs[query["_id"]] = {"_id": query["_id"]}
        if doc is not None:
            doc.update(copy.deepcopy(update.get("$set", {})))

    async def find_one_and_update(self, query: Doc, update: Doc, **_: Any) -> Doc | None:
        doc = self.docs.get(query["_id"])
        if doc is None:
            return None
        for path in update.get("$unset", {}):
            field, key = path.split(".", 1)
            doc.get(field, {}).pop(key, None)
        return copy.deepcopy(doc)

    async def delete_one(self, query: Doc) -> None:
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


@pytest.fixture
def parts() -> tuple[Outbox, FakeDatabase, FakeBroker]:
    database = FakeDatabase()
    broker = FakeBroker()
    outbox = Outbox(
        {"db": database},  # type: ignore[arg-type]
        "db",
        broker,  # type: ignore[arg-type]
        publish_seconds=0.5,
        relay_seconds=0.01,
        retry_after=7,
    )
    return outbox, database, broker


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


async def test_delivered_entries_are_cleared_with_their_marker(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    entries = event_entry(_requested()) | event_entry(_ended())
    database["sessions"].docs["s1"] = {"_id": "s1", "outbox": copy.deepcopy(entries)}
    token = await outbox.hold("sessions", "s1")

    assert await outbox.deliver("sessions", "s1", entries, token)
    await outbox.aclose()  # lets the clearing finish

    assert broker.ids() == list(entries)  # same ids, same order
    assert database["sessions"].docs["s1"]["outbox"] == {}
    assert database[MARKERS].docs == {}


async def test_a_marker_stays_while_another_writes_entries_remain(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, _ = parts
    mine, theirs = event_entry(_ended()), event_entry(_requested())
    database["sessions"].docs["s1"] = {"_id": "s1", "outbox": copy.deepcopy(mine | theirs)}
    token = await outbox.hold("sessions", "s1")
    assert await outbox.deliver("sessions", "s1", mine, token)
    await outbox.aclose()
    assert list(database["sessions"].docs["s1"]["outbox"]) == list(theirs)
    assert "sessions/s1" in database[MARKERS].docs  # the relay still finds theirs


async def test_while_kafka_is_down_entries_wait_new_writes_are_refused_and_the_relay_completes(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    entries = event_entry(_requested())
    database["sessions"].docs["s1"] = {"_id": "s1", "outbox": copy.deepcopy(entries)}
    token = await outbox.hold("sessions", "s1")
    broker.down = True

    assert not await outbox.deliver("sessions", "s1", entries, token)
    assert database["sessions"].docs["s1"]["outbox"] == entries  # still promised
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
    assert database["sessions"].docs["s1"]["outbox"] == {}


async def test_the_relay_clears_markers_of_records_with_nothing_pending(
    parts: tuple[Outbox, FakeDatabase, FakeBroker],
) -> None:
    outbox, database, broker = parts
    await outbox.hold("sessions", "gone")  # the record's write failed after its marker
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
    database["sessions"].docs["s1"] = {"_id": "s1", "outbox": copy.deepcopy(entries)}
    now["name"] = "new"
    assert await outbox.deliver("sessions", "s1", entries, await outbox.hold("sessions", "s1"))
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
