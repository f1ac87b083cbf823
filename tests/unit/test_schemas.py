"""The event contracts: envelope round trip, validation, naming, JSON Schema export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import ALL_EVENTS, CloudEvent, SessionReady, SessionRequested, hub_username
from schemas.__main__ import export
from schemas.naming import user_domain, user_origin


def _requested(**overrides: object) -> SessionRequested:
    fields: dict[str, object] = {
        "session_id": "s1",
        "tenant_id": "demo",
        "hub_user": hub_username("demo", "alice"),
        "host_user_id": "alice",
    }
    return SessionRequested.model_validate(fields | overrides)


def test_binary_mode_round_trip_keeps_every_attribute() -> None:
    event = CloudEvent.wrap(_requested(), source="/test", subject="s1")
    headers = {k: v.encode() for k, v in event.kafka_headers().items()}  # as Kafka delivers
    back = CloudEvent.from_kafka(SessionRequested, headers, event.kafka_value())
    assert back == event
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"io.nbembed.session.requested.v1"
    assert json.loads(event.kafka_value())["session_id"] == "s1"  # data alone in the value
    assert event.kafka_key() == event.data.hub_user.encode()


def test_from_kafka_refuses_what_is_not_the_expected_event() -> None:
    event = CloudEvent.wrap(_requested(), source="/test")
    headers = event.kafka_headers()
    with pytest.raises(ValueError, match="ce_specversion"):
        CloudEvent.from_kafka(SessionRequested, {}, event.kafka_value())
    with pytest.raises(ValueError, match="expected event type"):
        CloudEvent.from_kafka(SessionReady, headers, event.kafka_value())
    with pytest.raises(ValidationError):
        CloudEvent.from_kafka(SessionRequested, headers, b'{"session_id": "s1"}')


def test_payloads_reject_unknown_fields_and_bad_ids() -> None:
    with pytest.raises(ValidationError):
        _requested(surprise=1)
    with pytest.raises(ValidationError):
        _requested(notebook_id="../etc/passwd")
    with pytest.raises(ValidationError):
        _requested(tenant_id="Not A Slug")


@pytest.mark.parametrize(
    "user_id", ["alice", "Alice", "ÄLICE ünïcode 🎉", "x" * 5000, "a/b\\c", " ", "\x00"]
)
def test_hub_username_is_valid_for_any_user_id(user_id: str) -> None:
    name = hub_username("demo", user_id)
    assert name == hub_username("demo", user_id)  # deterministic
    assert name.startswith("demo-") and len(name) <= 64
    assert name == name.lower() and name.replace("-", "").isalnum() and name.isascii()


def test_hub_username_separates_case_users_and_tenants() -> None:
    names = {
        hub_username("demo", "alice"),
        hub_username("demo", "Alice"),
        hub_username("demo", "alice "),
        hub_username("acme", "alice"),
    }
    assert len(names) == 4
    many = {hub_username("demo", f"user{i}") for i in range(20000)}
    assert len(many) == 20000
    with pytest.raises(ValueError):
        hub_username("Bad Tenant", "alice")


def test_json_schema_export_writes_one_schema_per_event(tmp_path: Path) -> None:
    written = export(tmp_path)
    assert len(written) == len(ALL_EVENTS)
    schema = json.loads((tmp_path / "io.nbembed.session.requested.v1.json").read_text())
    assert schema["x-kafka-topic"] == "nbembed.sessions"
    assert "host_user_id" in schema["required"]


def test_each_hub_user_gets_a_host_of_their_own_under_the_hubs() -> None:
    alice, bob = hub_username("demo", "alice"), hub_username("demo", "bob")
    hub = "https://jupyter.example.com"
    assert user_origin(alice, hub) == f"https://{alice}.jupyter.example.com"
    assert user_origin(bob, "http://jupyter.nbembed.localhost:8000") == (
        f"http://{bob}.jupyter.nbembed.localhost:8000"
    )
    assert user_domain("idle-culler", "h", kind="service") == "idle-culler--service.h"
    for bad in ("a--b", "-a", "a.b", "A", "x" * 64, "a/b"):
        with pytest.raises(ValueError):
            user_domain(bad, "h")
