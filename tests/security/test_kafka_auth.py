"""Kafka refuses anyone without a stack password, and each service beyond its own ACLs.

Attack (a) comes from where untrusted code runs: a kernel on a user's real
server. It reaches the broker's ports (the machine is shared) but has no
Kafka password: anonymous clients, wrong passwords and a mechanism Kafka does
not offer must neither publish a forged event nor read one. (The kernel runs
as root today and could read ``.run/secrets``; moving kernels to their own
accounts is another part of issue 7, so this suite does not rely on it.)

Attack (b) is a service that misbehaves or leaks its password: each
principal is refused every topic, group and admin operation the table in
``infra/kafka_access.py`` does not grant it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from infra import kafka, kafka_access
from infra.kafka_access import ACCESS, Acl, Operation, Resource, principal
from infra.settings import StackSettings
from schemas import ServerReady, all_topics, dlq_topic, hub_username
from services.common.kafka import PRODUCER_OPTIONS
from tests.security.egress_helpers import egress_filter_lifted
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


ATTACK = """
import asyncio, json, logging, socket
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

said = []
class Said(logging.Handler):
    def emit(self, record):
        said.append(record.getMessage())
logging.getLogger("aiokafka").addHandler(Said())

async def publish(options, topic):
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b'{"forged": true}', key=b"attacker")
        return "ok"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await producer.stop()

async def consume(options, topic, group):
    consumer = AIOKafkaConsumer(
        topic, **options, group_id=group, auto_offset_reset="earliest",
        request_timeout_ms=5000,
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=2000)
        return "ok"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await consumer.stop()

def reachable(port):
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0

def scram(user, password, mechanism="SCRAM-SHA-512"):
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": user, "sasl_plain_password": password}

broker, controller = BROKER, CONTROLLER
attempts = {
    "anonymous": {"bootstrap_servers": f"127.0.0.1:{broker}"},
    "anonymous controller": {"bootstrap_servers": f"127.0.0.1:{controller}"},
    "admin, wrong password": {"bootstrap_servers": f"127.0.0.1:{broker}",
                              **scram("nbembed-admin", "guess")},
    "sync, wrong password": {"bootstrap_servers": f"127.0.0.1:{broker}",
                             **scram("nbembed-sync", "guess")},
    "admin, SCRAM-SHA-256": {"bootstrap_servers": f"127.0.0.1:{broker}",
                             **scram("nbembed-admin", "guess", "SCRAM-SHA-256")},
    "admin, PLAIN": {"bootstrap_servers": f"127.0.0.1:{broker}",
                     **scram("nbembed-admin", "guess", "PLAIN")},
}
results = {"reachable": [reachable(broker), reachable(controller)]}
for name, options in attempts.items():
    results[name] = {
        "publish": await publish(options, PUBLISH_TOPIC),
        "consume": await consume(options, CONSUME_TOPIC, CONSUME_GROUP),
    }
results["said"] = said
print(json.dumps(results))
"""


async def test_a_kernel_without_the_stack_password_can_neither_publish_nor_consume(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    user_id = f"kafka-attacker-{uuid.uuid4().hex[:8]}"
    hub_user = hub_username(stack_settings.tenants[0], user_id)
    session = await open_session(gateway, user_id=user_id)
    assert session["status"] == "ready", session
    code = (
        ATTACK.replace("BROKER", str(stack_settings.kafka_port))
        .replace("CONTROLLER", str(stack_settings.kafka_controller_port))
        # A forged server.ready would make sync place a notebook for anyone.
        .replace("PUBLISH_TOPIC", repr(ServerReady.topic))
        # Saved notebooks' events, read as sync's own consumer group.
        .replace("CONSUME_TOPIC", repr("nbembed.notebooks"))
        .replace("CONSUME_GROUP", repr("nbembed-sync-saves"))
    )
    try:
        token = await user_server_token(hub, hub_user)
        # Kafka's own authentication, as if the egress filter (test_egress.py) were off.
        with egress_filter_lifted(stack_settings):
            async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
                ran = await kernel.run(code, timeout=120)
        assert ran.error is None, ran.error
        results = json.loads(ran.stdout.strip().splitlines()[-1])
    finally:
        await hub.delete(f"/users/{hub_user}/server")

    # The broker is there: a refusal below is Kafka saying no, not a closed port.
    assert results.pop("reachable") == [True, True]
    said = "\n".join(results.pop("said"))
    for attempt, outcome in results.items():
        assert outcome["publish"] != "ok", f"{attempt} published a forged event"
        assert outcome["consume"] != "ok", f"{attempt} read the notebooks topic"
    # Wrong passwords fail authentication itself (not some later step).
    assert "SaslAuthenticationFailed" in said, said


# Every ACL boundary, from the test process with each service's real password.

SERVICES = sorted(ACCESS)


@pytest.fixture(scope="module")
def service_options(running_stack: StackSettings) -> dict[str, dict[str, Any]]:
    return {service: kafka.client_options(running_stack, service) for service in SERVICES}


@pytest.fixture
async def producers(
    service_options: dict[str, dict[str, Any]],
) -> AsyncIterator[dict[str, AIOKafkaProducer]]:
    """One producer per service, configured as the services' own."""
    started = {}
    try:
        for service in SERVICES:
            producer = AIOKafkaProducer(
                **service_options[service],
                **PRODUCER_OPTIONS,
                request_timeout_ms=10000,
            )
            await producer.start()
            started[service] = producer
        yield started
    finally:
        for producer in started.values():
            await producer.stop()


async def test_each_service_publishes_only_to_its_own_topics(
    producers: dict[str, AIOKafkaProducer],
) -> None:
    for service, producer in producers.items():
        allowed = ACCESS[service].write_topics()
        for topic in sorted(set(all_topics()) - allowed):
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, b'{"forged": true}', key=b"test")
        # ...and does publish to its own (a DLQ: no service reads those).
        own_dlq = sorted(t for t in allowed if t.endswith(".dlq"))[0]
        await producer.send_and_wait(own_dlq, b"kafka auth test", key=b"test")


async def _consume(options: dict[str, Any], topic: str, group: str | None) -> None:
    """Fetch once from ``topic`` (no group: no rebalance of a live group)."""
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        group_id=group,
        auto_offset_reset="latest",
        request_timeout_ms=10000,
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=500)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_reads_only_its_own_topics(
    service: str, service_options: dict[str, dict[str, Any]]
) -> None:
    options = service_options[service]
    readable = ACCESS[service].read_topics()
    for topic in sorted(set(all_topics()) - readable):
        with pytest.raises(TopicAuthorizationFailedError):
            await _consume(options, topic, None)
    for topic in sorted(readable):
        await _consume(options, topic, None)


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_joins_another_services_consumer_group(
    service: str, service_options: dict[str, dict[str, Any]]
) -> None:
    # A topic the service may read, so only the group can be what is refused.
    topic = sorted(ACCESS[service].read_topics())[0]
    others = sorted(
        group for other in SERVICES if other != service for group in ACCESS[other].groups()
    )
    assert others
    for group in [*others, "nbembed-anything-else"]:
        with pytest.raises(GroupAuthorizationFailedError):
            await _consume(service_options[service], topic, group)


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_can_change_topics_or_grant_itself_access(
    service: str, service_options: dict[str, dict[str, Any]], kafka_options: dict[str, Any]
) -> None:
    admin = AIOKafkaAdminClient(**service_options[service], request_timeout_ms=10000)
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic(f"evil-{uuid.uuid4().hex}", 1, 1)])
        assert [error for _topic, error, *_ in created.topic_errors] == [29]  # not authorized
        deleted = await admin.delete_topics([dlq_topic(ServerReady.topic)])
        assert [error for _topic, error, *_ in deleted.topic_error_codes] == [29]
        grant = Acl(
            f"User:{principal(service)}", Resource.TOPIC, "nbembed.sessions", Operation.READ
        )
        with pytest.raises(RuntimeError, match="error 31"):  # cluster authorization failed
            await kafka_access._create(admin, grant)
    finally:
        await admin.close()
    # The admin's view: the bindings are still exactly the table's.
    admin = AIOKafkaAdminClient(**kafka_options)
    await admin.start()
    try:
        plain, others = await kafka_access.current_acls(admin)
    finally:
        await admin.close()
    assert (plain, others) == (kafka_access.acls(), set())
