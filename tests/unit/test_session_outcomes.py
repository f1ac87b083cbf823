"""A session's outcomes reach the gateway on one topic (services/provisioner/handlers.py).

The provisioner tells sync to place the notebook (server.ready, on sync's
topic) and the gateway that the session is provisioning (session.provisioning,
on the status topic where sync's session.ready and every failure also go), so
the gateway consumer of that topic's partition (the user's) applies a session's
statuses in order.
The real-stack counterparts: tests/stack/test_replicas.py (a session seen
`provisioning` while sync is down) and tests/faults/test_store_down.py.
"""

from __future__ import annotations

from typing import Any, cast

from faststream.kafka import KafkaBroker

from schemas import (
    ALL_EVENTS,
    CloudEvent,
    ServerReady,
    SessionFailed,
    SessionProvisioning,
    SessionReady,
    SessionRequested,
    hub_username,
)
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient, RunningServer

HUB_USER = hub_username("demo", "u")


class RunningHub:
    async def ready_server(self, name: str) -> RunningServer:
        return RunningServer(path=f"/user/{name}/", restricted=False, instance="i1")


class Sessions:
    async def opened(self, session_id: str, hub_user: str, *, restricted: bool = False) -> bool:
        return False

    async def on_server(self, hub_user: str, instance: str | None) -> None:
        return None


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes]] = []

    async def publish(
        self, value: bytes, *, topic: str, key: bytes, headers: dict[str, str]
    ) -> None:
        self.events.append((topic, headers["ce_type"], key))


async def test_a_running_server_tells_sync_to_place_and_the_gateway_it_is_provisioning() -> None:
    broker = Published()
    handlers = ProvisionerHandlers(
        cast(HubClient, RunningHub()),
        cast(Any, Sessions()),
        cast(KafkaBroker, broker),
        spawn_timeout=10,
        hub_outage_tolerance=10,
    )
    request = SessionRequested(
        session_id="s1", tenant_id="demo", hub_user=HUB_USER, host_user_id="u"
    )
    await handlers.on_session_requested(CloudEvent.wrap(request, source="/t"))

    assert sorted(broker.events) == sorted(
        [
            (ServerReady.topic, ServerReady.event_type, HUB_USER.encode()),
            (SessionProvisioning.topic, SessionProvisioning.event_type, HUB_USER.encode()),
        ]
    )


def test_every_status_the_gateway_projects_shares_one_topic() -> None:
    status = {SessionProvisioning, SessionReady, SessionFailed}
    assert {event.topic for event in status} == {SessionReady.topic}
    assert {e for e in ALL_EVENTS if e.topic == SessionReady.topic} >= status
    assert ServerReady.topic != SessionReady.topic  # sync's command, read by sync alone
