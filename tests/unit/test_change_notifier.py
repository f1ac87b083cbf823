"""Long-poll wake-ups (services/gateway/store.py ChangeNotifier)."""

from __future__ import annotations

import asyncio

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
