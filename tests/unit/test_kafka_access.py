"""Kafka's access table (infra/kafka_access.py) and the broker's security config (infra/kafka.py).

The real-broker counterpart is tests/security/test_kafka_auth.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from faststream.security import SASLScram512

from infra import kafka, kafka_access, stack
from infra.kafka_access import ACCESS, Operation, Resource, principal
from infra.settings import StackSettings
from schemas import all_topics, dlq_topic
from services.common import kafka as common_kafka
from services.common.settings import ServiceSettings
from services.gateway import app as gateway_app
from services.gateway import dead_letters
from services.gateway.settings import GatewaySettings
from services.provisioner import app as provisioner_app
from services.provisioner.settings import ProvisionerSettings
from services.sync import app as sync_app
from services.sync.settings import SyncSettings


def _subscriptions(
    module: Any, build: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str | None, set[str]]:
    """The consumer groups a service's app really wires up, and their topics."""
    brokers: list[KafkaBroker] = []

    def recording(settings: ServiceSettings, client_id: str) -> KafkaBroker:
        brokers.append(common_kafka.make_broker(settings, client_id))
        return brokers[-1]

    monkeypatch.setattr(module, "make_broker", recording)
    build()
    (broker,) = brokers
    groups: dict[str | None, set[str]] = {}
    for subscriber in broker.subscribers:
        groups.setdefault(subscriber.group_id, set()).update(subscriber.topic_names)
        if subscriber.group_id is not None:
            # A member joining or leaving waits for every other member's next heartbeat:
            # at aiokafka's default (3 s) a two-replica gateway took 33 s to start.
            heartbeat = subscriber._connection_args.get("heartbeat_interval_ms")
            assert heartbeat == ServiceSettings().kafka_heartbeat_interval_ms, subscriber
    return groups


def test_the_table_grants_each_consumer_group_exactly_what_the_app_subscribes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps([]))
    builds = {
        "gateway": (
            gateway_app,
            lambda: gateway_app.create_app(
                GatewaySettings(
                    tenants_file=tenants,
                    internal_token="t",
                    ticket_key="k" * 32,
                    hub_login_token="t",
                )
            ),
        ),
        "provisioner": (
            provisioner_app,
            lambda: provisioner_app.create_app(
                ProvisionerSettings(hub_api_token="t", sync_token="t")
            ),
        ),
        "sync": (
            sync_app,
            lambda: sync_app.create_app(SyncSettings(provisioner_token="t", internal_token="t")),
        ),
    }
    assert set(builds) == set(ACCESS) == set(stack.SERVICES)
    for service, (module, build) in builds.items():
        wired = _subscriptions(module, build, monkeypatch)
        granted = {
            group: {event.topic for event in events}
            for group, events in ACCESS[service].consumes.items()
        } | {
            group: {dlq_topic(event.topic) for event in events}
            for group, events in ACCESS[service].dead_letters.items()
        }
        if ACCESS[service].follows:  # read by every replica, in no group
            granted[None] = {event.topic for event in ACCESS[service].follows}
        assert wired == granted, service


def test_every_topic_has_a_writer_and_every_event_topic_a_reader() -> None:
    written = set().union(*(access.write_topics() for access in ACCESS.values()))
    read = set().union(*(access.read_topics() for access in ACCESS.values()))
    assert written == set(all_topics())
    events = {t for t in all_topics() if not t.endswith(".dlq")}
    assert read == events | set(dead_letters.TOPICS)


def test_no_consumer_group_is_shared_and_only_the_gateway_reads_commands_dead_letters() -> None:
    groups = [group for access in ACCESS.values() for group in access.groups()]
    assert len(groups) == len(set(groups))
    for service, access in ACCESS.items():
        # DLQ topics are write-only for workers; the gateway reads those of the
        # commands a host waits on (to fail the session or save), in its own group.
        dead = {topic for topic in access.read_topics() if topic.endswith(".dlq")}
        expected = set(dead_letters.TOPICS) if service == "gateway" else set()
        assert dead == expected, service
    assert set(ACCESS["gateway"].dead_letters) == {"nbembed-gateway-dead-letters"}


def test_acls_are_literal_allow_bindings_for_service_principals_only() -> None:
    bindings = kafka_access.acls()
    assert {acl.principal for acl in bindings} == {f"User:{principal(u)}" for u in ACCESS}
    assert f"User:{principal(kafka_access.ADMIN)}" not in {acl.principal for acl in bindings}
    assert {acl.operation for acl in bindings} == {Operation.READ, Operation.WRITE}
    assert {acl.resource for acl in bindings} == {Resource.TOPIC, Resource.GROUP}
    sync = f"User:{principal('sync')}"
    sync_writes = {
        a.name for a in bindings if a.principal == sync and a.operation == Operation.WRITE
    }
    assert sync_writes == {
        "nbembed.session-status",
        "nbembed.notebook-status",
        dlq_topic("nbembed.servers"),
        dlq_topic("nbembed.notebooks"),
        dlq_topic("nbembed.inputs"),
    }


def _settings(tmp_path: Path) -> StackSettings:
    settings = StackSettings(state_dir=tmp_path)
    stack.ensure_kafka_passwords(settings)
    return settings


def test_broker_config_has_no_anonymous_listener_and_denies_by_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = kafka.write_config(settings)
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the admin's password
    config = dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line and "=" in line
    )
    protocols = dict(
        pair.split(":") for pair in config["listener.security.protocol.map"].split(",")
    )
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    listeners = {entry.split("://")[0] for entry in config["listeners"].split(",")}
    assert listeners == set(protocols)
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["sasl.mechanism.controller.protocol"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"].endswith("StandardAuthorizer")
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"] == "User:nbembed-admin"


def test_passwords_are_private_and_per_user(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    passwords = set()
    for user in kafka_access.USERS:
        path = settings.kafka_password_file(user)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        passwords.add(path.read_text())
    assert len(passwords) == len(kafka_access.USERS)


def test_a_log_formatted_without_sasl_users_is_moved_aside_and_formatted_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    properties = kafka.write_config(settings)
    data = kafka.kafka_dir(settings) / "data"
    data.mkdir()
    (data / "meta.properties").write_text("old")
    calls: list[list[str]] = []

    def fake_format(_settings: StackSettings, main_class: str, args: list[str]) -> None:
        calls.append(args)
        data.mkdir()
        (data / "meta.properties").write_text("new")

    monkeypatch.setattr(kafka, "_run_tool", fake_format)
    assert kafka.prepare_storage(settings, properties) is True
    (aside,) = kafka.kafka_dir(settings).glob("data.plaintext-*")
    assert (aside / "meta.properties").read_text() == "old"
    scram = [args[i + 1] for args in calls for i, a in enumerate(args) if a == "--add-scram"]
    assert [s.split(",")[0] for s in scram] == [
        f"SCRAM-SHA-512=[name={principal(u)}" for u in kafka_access.USERS
    ]
    # Formatted with users now: the next start leaves it alone.
    assert kafka.prepare_storage(settings, properties) is False
    assert len(calls) == 1


def test_tool_arguments_stay_off_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    kafka.kafka_dir(settings).mkdir(parents=True)
    seen: dict[str, Any] = {}

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen["command"] = command
        seen["argfile"] = Path(command[-1][1:]).read_text()
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(kafka.subprocess, "run", fake_run)
    kafka._run_tool(settings, "kafka.tools.StorageTool", ["--add-scram", "secret-value"])
    assert "secret-value" not in " ".join(seen["command"])
    assert seen["argfile"] == '"kafka.tools.StorageTool"\n"--add-scram"\n"secret-value"\n'
    assert not list(kafka.kafka_dir(settings).glob("args-*"))  # removed afterwards


def test_a_service_with_a_kafka_user_logs_in_with_scram(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-sync"
    secret.write_text("s3cret\n")
    settings = ServiceSettings(kafka_username="nbembed-sync", kafka_password_file=secret)
    security = common_kafka._security(settings)
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password) == ("nbembed-sync", "s3cret")
    assert common_kafka._security(ServiceSettings()) is None
    with pytest.raises(ValueError, match="KAFKA_PASSWORD"):
        ServiceSettings(kafka_username="nbembed-sync")
