"""Long-poll wake-ups: in one replica (store.py ChangeNotifier) and across them (changes.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from schemas import StatusChanged
from services.gateway.changes import ChangeFeed
from services.gateway.store import ChangeNotifier


async def test_a_change_between_read_and_wait_still_wakes_the_waiter() -> None:
    notifier = ChangeNotifier()
    with notifier.subscribe("s1") as changed:
        notifier.notify("s1")  # happens after the waiter read the state, before it waits
        await asyncio.wait_for(changed.wait(), 1)


async def test_every_waiter_on_a_key_wakes_and_others_do_not() -> None:
    notifier = ChangeNotifier()
    with (
        notifier.subscribe("s1") as a,
        notifier.subscribe("s1") as b,
        notifier.subscribe("s2") as other,
    ):
        notifier.notify("s1")
        await asyncio.wait_for(asyncio.gather(a.wait(), b.wait()), 1)
        assert not other.is_set()


async def test_nothing_is_kept_once_nobody_waits() -> None:
    notifier = ChangeNotifier()
    for key in ("a", "b", "c"):
        with notifier.subscribe(key):
            pass
    notifier.notify("a")
    assert notifier._events == {} and notifier._waiting == {}


# -- across replicas (services/gateway/changes.py) -------------------------------------------


class _Broker:
    """Stands in for Kafka: what the feed publishes, delivered to every replica's feed."""

    def __init__(self) -> None:
        self.feeds: list[ChangeFeed] = []

    async def publish(
        self, body: bytes, *, topic: str, key: bytes, headers: dict[str, str]
    ) -> None:
        assert topic == StatusChanged.topic
        for feed in self.feeds:
            await feed._on_message(cast(Any, SimpleNamespace(headers=headers, body=body)))


def _replica(broker: _Broker) -> tuple[ChangeNotifier, ChangeNotifier]:
    sessions, saves = ChangeNotifier(), ChangeNotifier()
    broker.feeds.append(ChangeFeed(cast(Any, broker), {"session": sessions, "save": saves}))
    return sessions, saves


async def test_a_change_in_one_replica_wakes_the_same_key_in_every_other() -> None:
    broker = _Broker()
    (sessions_a, _), (sessions_b, saves_b) = _replica(broker), _replica(broker)
    with (
        sessions_b.subscribe("s1") as session_b,
        saves_b.subscribe("s1") as save_b,
        sessions_b.subscribe("s2") as other_b,
    ):
        sessions_a.notify("s1")  # replica a's projection moved session s1
        await asyncio.wait_for(session_b.wait(), 1)
        assert not save_b.is_set() and not other_b.is_set()


async def test_a_replica_ignores_its_own_announcements_and_wakes_only_locally_on_them() -> None:
    broker = _Broker()
    sessions, _ = _replica(broker)
    woken: list[str] = []
    real_wake = sessions.wake
    sessions.wake = lambda key: (woken.append(key), real_wake(key))[1]  # type: ignore[method-assign]
    sessions.notify("s1")
    await asyncio.sleep(0.01)  # let the announcement go out and come back
    assert woken == ["s1"]  # once, from the write itself; not again from Kafka


async def test_an_invalid_announcement_wakes_nobody_and_does_not_raise() -> None:
    broker = _Broker()
    sessions, _ = _replica(broker)
    (feed,) = broker.feeds
    with sessions.subscribe("s1") as changed:
        message = SimpleNamespace(headers={"ce_type": StatusChanged.event_type}, body=b"{}")
        await feed._on_message(cast(Any, message))
        assert not changed.is_set()
