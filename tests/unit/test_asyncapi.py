"""The AsyncAPI document comes from the services' own subscribers and publishers.

``python -m services.asyncapi`` builds each service as it runs and asks
FastStream; these tests check that what it generates is the whole contract:
every event, every topic infra provisions, who reads and writes what, and
the README's topic list.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import kafka_access
from schemas import (
    ALL_EVENTS,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    ServerReady,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionReady,
    SessionRequested,
    all_topics,
)
from schemas.events import NOTIFICATIONS
from services import asyncapi

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.document()


def payload_models(doc: dict[str, Any], channel: str) -> set[str]:
    """The event models a channel's message may carry (following $refs and unions)."""
    [ref] = doc["channels"][channel]["messages"].values()
    pending = [doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]["payload"]]
    events = {event.__name__ for event in ALL_EVENTS}
    found: set[str] = set()
    while pending:
        schema = pending.pop()
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in events:
                found.add(name)
            else:
                pending.append(doc["components"]["schemas"][name])
        pending += schema.get("oneOf", []) + schema.get("anyOf", [])
    return found


def channel(doc: dict[str, Any], action: str, address: str, owner: str) -> str:
    """The key of ``owner``'s (a group or a service) channel on ``address``."""
    key = f"{address}:{owner}"
    assert key in doc["channels"], sorted(doc["channels"])
    [op] = [o for o in doc["operations"].values() if o["channel"]["$ref"].endswith("/" + key)]
    assert op["action"] == action
    return key


def test_every_event_and_every_provisioned_topic_is_in_the_document(
    doc: dict[str, Any],
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert asyncapi.event_models(doc) == {event.__name__ for event in ALL_EVENTS}
    # infra creates topics (and their ACLs) from schemas/; the services use exactly those.
    assert asyncapi.topics(doc) == set(all_topics())


def test_each_subscriber_and_publisher_names_its_event_types(doc: dict[str, Any]) -> None:
    sessions = channel(doc, "receive", SessionRequested.topic, "nbembed-provisioner")
    assert payload_models(doc, sessions) == {
        "ServerWarmRequested",
        "SessionRequested",
        "SessionEnded",
        "ServerStopped",
    }
    saves = channel(doc, "receive", NotebookSaved.topic, "nbembed-sync-saves")
    assert payload_models(doc, saves) == {"NotebookSaved", "NotebookRenamed", "NotebookDeleted"}
    ready = channel(doc, "send", ServerReady.topic, "provisioner")
    assert payload_models(doc, ready) == {ServerReady.__name__}
    # The gateway hears a session's outcomes on one topic (one consumer, in order).
    status = channel(doc, "receive", SessionReady.topic, "nbembed-gateway")
    assert payload_models(doc, status) == {
        "SessionProvisioning",
        "SessionReady",
        "SessionFailed",
        "ServerLost",
    }
    assert "SessionProvisioning" in payload_models(
        doc, channel(doc, "send", SessionReady.topic, "provisioner")
    )
    commands = channel(doc, "send", SessionEnded.topic, "gateway")
    assert payload_models(doc, commands) == {
        ServerWarmRequested.__name__,
        SessionRequested.__name__,
        SessionEnded.__name__,
    }
    failures = channel(doc, "send", SessionFailed.topic, "sync")
    assert SessionFailed.__name__ in payload_models(doc, failures)
    assert {NotebookRenamed.__name__, NotebookDeleted.__name__} <= payload_models(
        doc, channel(doc, "send", NotebookSaved.topic, "gateway")
    )


def test_every_message_carries_the_cloudevents_headers_and_dead_letters_are_described(
    doc: dict[str, Any],
) -> None:
    for name, message in doc["components"]["messages"].items():
        required = set(message["headers"]["required"])
        assert required == (
            {"nbembed_dlq_reason", "nbembed_dlq_source_topic", "nbembed_dlq_consumer_group"}
            | {"nbembed_dlq_source_partition", "nbembed_dlq_source_offset"}
            | {"nbembed_dlq_attempts", "nbembed_dlq_time"}
            if name == "DeadLetter"
            else {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"}
        ), name
    consumed = {
        doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    # Dead-letter topics are read (by the gateway) but not re-dead-lettered, and
    # notifications are read group-less with nothing to retry.
    retried = {t for t in consumed if not t.endswith(".dlq")} - {e.topic for e in NOTIFICATIONS}
    assert {t + ".dlq" for t in retried} <= asyncapi.topics(doc)


def test_the_readme_lists_exactly_the_topics_the_services_use(doc: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Events and delivery", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(nbembed\.[a-z.-]+)`", section))
    assert listed == {topic for topic in asyncapi.topics(doc) if not topic.endswith(".dlq")}


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    subprocess.run(
        [sys.executable, "-m", "services.asyncapi", str(out)], cwd=ROOT, check=True, timeout=120
    )
    assert asyncapi.topics(json.loads(out.read_text())) == set(all_topics())


def test_each_service_declares_exactly_what_its_kafka_acls_let_it_publish(
    doc: dict[str, Any],
) -> None:
    # An event published through an undeclared publisher is missing from the
    # document; one the ACLs do not allow fails at run time. Both show here.
    for service, access in kafka_access.ACCESS.items():
        declared = set()
        for key, channel in doc["channels"].items():
            if key.endswith(f":{service}") and not channel["address"].endswith(".dlq"):
                declared |= payload_models(doc, key)
        assert declared == {event.__name__ for event in access.publishes}, service
