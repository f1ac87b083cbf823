"""Sessions follow their server: who stopped it, and which sessions its stop ends.

The real-stack counterpart is tests/stack/test_server_follow.py (culler, SIGKILL,
operator stop); these pin the decisions that the stack cannot reach on demand:
a notice about an older server, a notice the hub contradicts, a forged session id.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from infra.hub.server_stops import HUB_SHUTDOWN, cause_of
from schemas import CloudEvent, ServerLost, ServerStopped, hub_username
from services.gateway.projection import Projection
from services.provisioner import handlers as provisioner_handlers
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient, ServerState

ALICE = hub_username("demo", "alice")
BOB = hub_username("demo", "bob")


@pytest.mark.parametrize(
    ("requester", "cause"),
    [
        (("service", "idle-culler"), "culled"),
        (("service", "nbembed"), "nbembed"),
        (("service", "ops"), "stopped"),
        (("user", "admin"), "stopped"),
        (HUB_SHUTDOWN, "stopped"),
        (None, "crashed"),
    ],
)
def test_each_stop_is_attributed_to_who_asked(requester: Any, cause: str) -> None:
    assert cause_of(requester, culler="idle-culler", nbembed="nbembed")[0] == cause


class _Sessions:
    def __init__(self, user: dict[str, Any] | None) -> None:
        self.record = user
        self.cleared = False

    async def user(self, hub_user: str) -> dict[str, Any] | None:
        return self.record

    async def server_gone(self, hub_user: str) -> None:
        self.cleared = True


class _Hub:
    def __init__(self, state: ServerState | None) -> None:
        self.state = state

    async def server_state(self, name: str) -> ServerState | None:
        return self.state


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    sent: list[Any] = []

    async def publish(broker: Any, event: CloudEvent[Any]) -> None:
        sent.append(event.data)

    monkeypatch.setattr(provisioner_handlers, "publish_event", publish)
    return sent


def _handlers(user: dict[str, Any] | None, state: ServerState | None) -> ProvisionerHandlers:
    return ProvisionerHandlers(
        cast(HubClient, _Hub(state)),
        cast(Any, _Sessions(user)),
        cast(KafkaBroker, None),
        spawn_timeout=10,
        hub_outage_tolerance=10,
    )


def _stopped(instance: str | None, cause: str = "culled") -> CloudEvent[ServerStopped]:
    notice = ServerStopped.model_validate(
        {"hub_user": ALICE, "instance": instance, "cause": cause, "detail": "d"}
    )
    return CloudEvent.wrap(notice, source="/t")


async def test_the_stop_of_the_sessions_server_ends_them(published: list[Any]) -> None:
    handlers = _handlers({"_id": ALICE, "instance": "i1", "open": ["s1", "s2"]}, None)
    await handlers.on_server_stopped(_stopped("i1"))
    (lost,) = published
    assert isinstance(lost, ServerLost)
    assert lost.session_ids == ["s1", "s2"] and lost.code == "server-culled"
    assert lost.tenant_id == "demo" and "new session" in lost.reason


async def test_a_notice_about_an_older_server_ends_nothing(published: list[Any]) -> None:
    # The provisioner restarted the server (stricter mode) or a new session already
    # started a new one: the sessions live on i2, and i1's stop is history.
    handlers = _handlers({"_id": ALICE, "instance": "i2", "open": ["s1"]}, None)
    await handlers.on_server_stopped(_stopped("i1", cause="culled"))
    await handlers.on_server_stopped(_stopped(None, cause="crashed"))
    assert published == []


async def test_nbembeds_own_stops_end_nothing(published: list[Any]) -> None:
    # Stops with nbembed's service token: the provisioner's own, or someone restarting
    # the server with it (the sessions' pages reconnect to the restarted server).
    handlers = _handlers({"_id": ALICE, "instance": "i1", "open": ["s1"]}, None)
    await handlers.on_server_stopped(_stopped("i1", cause="nbembed"))
    assert published == []


async def test_a_notice_the_hub_contradicts_ends_nothing(published: list[Any]) -> None:
    running = ServerState(ready=None, pending=None, instance="i1")
    handlers = _handlers({"_id": ALICE, "instance": "i1", "open": ["s1"]}, running)
    await handlers.on_server_stopped(_stopped("i1"))
    assert published == []


async def test_reconciliation_reports_only_servers_the_hub_no_longer_runs(
    published: list[Any],
) -> None:
    class _Many(_Sessions):
        async def users_on_servers(self) -> list[dict[str, Any]]:
            return [
                {"_id": ALICE, "instance": "i1", "open": ["s1"]},
                {"_id": BOB, "instance": "b1", "open": ["s2"]},
            ]

    class _Hubs:
        async def server_state(self, name: str) -> ServerState | None:
            return ServerState(ready=None, pending=None, instance="b1") if name == BOB else None

    handlers = ProvisionerHandlers(
        cast(HubClient, _Hubs()),
        cast(Any, _Many(None)),
        cast(KafkaBroker, None),
        spawn_timeout=10,
        hub_outage_tolerance=10,
    )
    assert await handlers.reconcile() == 0  # gone once: maybe a restart in progress
    assert published == []
    assert await handlers.reconcile() == 1  # gone twice in a row: lost
    (stopped,) = published
    assert isinstance(stopped, ServerStopped)
    assert (stopped.hub_user, stopped.instance) == (ALICE, "i1")


class _Store:
    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = docs

    async def get_any(self, doc_id: str) -> dict[str, Any] | None:
        return self.docs.get(doc_id)


async def test_the_gateway_ends_only_the_named_users_sessions() -> None:
    ended: list[tuple[str, str]] = []

    async def end(session: dict[str, Any], reason: str, code: str) -> None:
        ended.append((session["_id"], code))

    store = _Store(
        {
            "s1": {"_id": "s1", "hub_user": ALICE, "tenant_id": "demo", "status": "ready"},
            "s2": {"_id": "s2", "hub_user": BOB, "tenant_id": "demo", "status": "ready"},
            "s3": {"_id": "s3", "hub_user": ALICE, "tenant_id": "demo", "status": "failed"},
        }
    )
    projection = Projection(
        cast(Any, store), cast(Any, None), cast(Any, None), cast(Any, None), end
    )
    lost = ServerLost(
        tenant_id="demo",
        hub_user=ALICE,
        session_ids=["s1", "s2", "s3", "unknown"],
        code="server-crashed",
        reason="gone",
    )
    await projection.on_server_lost(CloudEvent.wrap(lost, source="/t"))
    assert ended == [("s1", "server-crashed")]
