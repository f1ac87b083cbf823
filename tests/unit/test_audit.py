"""The audit trail's logic: contract bounds, cursors, the rate limit, the projector's mapping.

The real-stack counterparts are tests/stack/test_audit.py and tests/security/test_audit.py.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic import ValidationError

from infra.kafka_access import ACCESS
from schemas import (
    ALL_EVENTS,
    SERVER_REPORTED_KINDS,
    AuditRecorded,
    CloudEvent,
    EventData,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    SessionEnded,
    SessionRequested,
    hub_username,
)
from services.common.kafka import EventConsumer
from services.gateway.audit import AuditProjector
from services.gateway.audit_store import BadCursor, Position
from services.gateway.rate_limit import RateLimiter, Verdict

ALICE = hub_username("demo", "alice")
BOB = hub_username("demo", "bob")


def _record(**overrides: Any) -> AuditRecorded:
    fields: dict[str, Any] = {
        "tenant_id": "demo",
        "kind": "kernel.started",
        "reported_by": "server",
    }
    return AuditRecorded.model_validate(fields | overrides)


# -- the contract -------------------------------------------------------------------------


def test_audit_records_are_bounded_and_of_known_kinds() -> None:
    assert _record(detail={"kernel_id": "k" * 512}).detail["kernel_id"] == "k" * 512
    for bad in (
        {"kind": "rm.rf"},  # not a kind
        {"detail": {"k": "v" * 513}},  # value too long
        {"detail": {f"k{i}": "v" for i in range(17)}},  # too many keys
        {"detail": {"Not a key": "v"}},  # keys are short snake_case names
        {"detail": {"k": 1}},  # values are strings
        {"tenant_id": "Bad Tenant"},
        {"surprise": "field"},
    ):
        with pytest.raises(ValidationError):
            _record(**bad)


def test_servers_may_report_only_what_only_they_see() -> None:
    assert set(SERVER_REPORTED_KINDS) == {"kernel.started", "download.refused"}


def test_one_users_audit_events_share_a_key_and_tenants_never_do() -> None:
    alice = CloudEvent.wrap(_record(hub_user=ALICE), source="/t")
    again = CloudEvent.wrap(_record(hub_user=ALICE, kind="download.refused"), source="/t")
    other = CloudEvent.wrap(_record(tenant_id="acme", hub_user=None), source="/t")
    assert alice.kafka_key() == again.kafka_key() != other.kafka_key()


# -- the consumer group -------------------------------------------------------------------


class _Recorder:
    """Stands in for an EventConsumer: which event types get a handler."""

    def __init__(self) -> None:
        self.types: list[type[EventData]] = []

    def on(self, data_model: type[EventData], handler: Any) -> None:
        self.types.append(data_model)


def test_the_audit_group_handles_every_event_type_on_the_topics_it_reads() -> None:
    # An event type on these topics without a handler would be dead-lettered by this
    # group: whoever adds an event to nbembed.sessions (say) must audit it here too.
    recorder = _Recorder()
    projector = AuditProjector(*(cast(Any, None),) * 5)
    projector.attach(cast(EventConsumer, recorder))
    topics = {event.topic for event in recorder.types}
    assert set(recorder.types) == {event for event in ALL_EVENTS if event.topic in topics}
    assert set(recorder.types) == set(ACCESS["gateway"].consumes["nbembed-gateway-audit"])
    assert "nbembed.audit" in topics


def test_every_consumer_group_handles_every_event_type_of_its_topics() -> None:
    for service, access in ACCESS.items():
        for group, events in access.consumes.items():
            topics = {event.topic for event in events}
            expected = {event for event in ALL_EVENTS if event.topic in topics}
            assert set(events) == expected, (service, group)


# -- cursors ------------------------------------------------------------------------------


def test_a_cursor_round_trips_to_the_millisecond() -> None:
    position = Position(datetime(2026, 11, 26, 9, 0, 0, 123000, tzinfo=UTC), "a-b-1")
    assert Position.decode(position.encode()) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "LTE=",  # "-1"
        base64.urlsafe_b64encode(b"123").decode(),  # no id
        base64.urlsafe_b64encode(b"-5:abc").decode(),
        base64.urlsafe_b64encode(b"99999999999999999999:abc").decode(),  # too many digits
        base64.urlsafe_b64encode(b"999999999999999:abc").decode(),  # beyond the calendar
        base64.urlsafe_b64encode(b"1:abc def").decode(),
        base64.urlsafe_b64encode(b"1:" + b"x" * 200).decode(),
        base64.urlsafe_b64encode("1:é".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "YQ",  # bad padding
    ],
)
def test_cursors_that_this_api_did_not_hand_out_are_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        Position.decode(cursor)


# -- rate limit ---------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reports_are_allowed_in_a_burst_then_at_the_rate() -> None:
    clock = _Clock()
    limiter = RateLimiter(burst=3, per_second=0.5, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [Verdict.ALLOWED] * 3
    assert limiter.check("a") is Verdict.FIRST_REFUSAL
    assert limiter.check("a") is Verdict.REFUSED
    assert limiter.retry_after("a") == pytest.approx(2.0)
    assert limiter.check("b") is Verdict.ALLOWED  # another user is unaffected
    clock.now += 2
    assert limiter.check("a") is Verdict.ALLOWED
    assert limiter.check("a") is Verdict.FIRST_REFUSAL  # a new burst of refusals: recorded once
    clock.now += 3600
    assert [limiter.check("a") for _ in range(4)].count(Verdict.ALLOWED) == 3  # never above burst


def test_ten_thousand_reports_are_bounded_and_so_is_memory() -> None:
    clock = _Clock()
    limiter = RateLimiter(burst=30, per_second=0.5, max_keys=100, clock=clock)
    verdicts = []
    for _ in range(10_000):
        clock.now += 0.001  # 10k reports in 10 s
        verdicts.append(limiter.check("flooder"))
    assert verdicts.count(Verdict.ALLOWED) <= 30 + 0.5 * 10 + 1
    assert verdicts.count(Verdict.FIRST_REFUSAL) == verdicts.count(Verdict.ALLOWED) - 30 + 1
    for i in range(1000):
        limiter.check(f"user{i}")
    assert len(limiter._buckets) <= 100


# -- the projector ------------------------------------------------------------------------


class _Broker:
    def __init__(self) -> None:
        self.published: list[CloudEvent[AuditRecorded]] = []

    async def publish(self, value: bytes, *, topic: str, key: bytes, headers: Any) -> None:
        assert topic == "nbembed.audit"
        self.published.append(CloudEvent.from_kafka(AuditRecorded, headers, value))


class _Docs:
    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self._docs = docs

    async def get_any(self, doc_id: str) -> dict[str, Any] | None:
        return self._docs.get(doc_id)

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        return self._docs.get(doc_id)


def _projector(
    broker: _Broker,
    users: dict[str, Any] | None = None,
    sessions: dict[str, Any] | None = None,
    saves: dict[str, Any] | None = None,
) -> AuditProjector:
    return AuditProjector(
        cast(Any, broker),
        cast(Any, None),
        cast(Any, _Docs(users or {})),
        cast(Any, _Docs(sessions or {})),
        cast(Any, _Docs(saves or {})),
    )


async def test_a_redelivered_event_becomes_the_same_audit_record() -> None:
    broker = _Broker()
    projector = _projector(broker)
    requested = CloudEvent.wrap(
        SessionRequested(session_id="s1", tenant_id="demo", hub_user=ALICE, host_user_id="alice"),
        source="/t",
    )
    await projector.on_session_requested(requested)
    await projector.on_session_requested(requested)
    first, second = broker.published
    assert first.id == second.id and first.time == second.time == requested.time
    assert first.data.kind == "session.requested"
    assert (first.data.user_id, first.data.session_id) == ("alice", "s1")


async def test_a_save_is_attributed_to_whoever_saved_not_to_the_notebooks_creator() -> None:
    broker = _Broker()
    users = {
        BOB: {"tenant_id": "demo", "user_id": "bob"},
        ALICE: {"tenant_id": "demo", "user_id": "alice"},
    }
    saves = {"sv1": {"hub_user": BOB, "session_id": "s2"}}
    projector = _projector(broker, users=users, saves=saves)
    stored = NotebookStored(
        tenant_id="demo",
        notebook_id="n1",
        save_id="sv1",
        hub_user=ALICE,  # the notebook's creator
        owner_user_id="alice",
        name="Report",
        revision=3,
        content_sha256="0" * 64,
        changed=True,
    )
    failed = NotebookStoreFailed(
        tenant_id="demo", notebook_id="n1", save_id="sv1", code="too_large", reason="big"
    )
    await projector.on_notebook_stored(CloudEvent.wrap(stored, source="/t"))
    await projector.on_notebook_store_failed(CloudEvent.wrap(failed, source="/t"))
    ok, bad = (event.data for event in broker.published)
    assert (ok.kind, ok.user_id, ok.session_id, ok.detail["revision"]) == (
        "save.stored",
        "bob",
        "s2",
        "3",
    )
    assert (bad.kind, bad.user_id, bad.detail["code"]) == ("save.failed", "bob", "too_large")


async def test_a_hub_user_mapped_to_another_tenant_gets_no_user_id() -> None:
    broker = _Broker()
    projector = _projector(
        broker,
        users={ALICE: {"tenant_id": "acme", "user_id": "mallory"}},
        sessions={"s1": {"end_reason": "notebook deleted", "notebook_id": "n1"}},
    )
    ended = SessionEnded(session_id="s1", tenant_id="demo", hub_user=ALICE)
    await projector.on_session_ended(CloudEvent.wrap(ended, source="/t"))
    (event,) = broker.published
    assert event.data.user_id is None and event.data.hub_user == ALICE
    assert event.data.detail == {"reason": "notebook deleted"}
    assert event.data.notebook_id == "n1"


async def test_saves_keep_their_origin_and_path_in_the_trail() -> None:
    broker = _Broker()
    projector = _projector(
        broker,
        users={ALICE: {"tenant_id": "demo", "user_id": "alice"}},
        saves={"sv1": {"hub_user": ALICE, "session_id": None}},
    )
    saved = NotebookSaved(
        tenant_id="demo",
        notebook_id="n1",
        save_id="sv1",
        hub_user=ALICE,
        path="work/" + "x" * 1000 + ".ipynb",
        origin="server",
    )
    await projector.on_notebook_saved(CloudEvent.wrap(saved, source="/t"))
    (event,) = broker.published
    assert event.data.detail["origin"] == "server" and len(event.data.detail["path"]) == 512
    assert json.loads(event.kafka_value())["user_id"] == "alice"


def test_positions_order_by_time_then_id() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        Position(t, "b")
        < Position(t + timedelta(milliseconds=1), "a")
        < Position(t + timedelta(milliseconds=1), "b")
    )
