"""The provisioner's hub client under a busy hub (services/provisioner/hub.py), hub mocked.

The real-stack counterpart is tests/bench/burst.py: 100 new users at once at the hub's
spawn limit, where a session whose 429 waits counted against its spawn deadline failed.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.provisioner.hub import HubClient, HubError
from services.provisioner.settings import ProvisionerSettings


def _busy_hub(refusals: int) -> tuple[HubClient, list[str]]:
    """A hub that answers 429 to the first ``refusals`` spawn requests, then starts at once."""
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            spawns = sum(1 for call in calls if call.startswith("POST"))
            if spawns <= refusals:
                return httpx.Response(429, headers={"Retry-After": "0.05"})
            return httpx.Response(201)
        server = {"ready": True, "url": "/user/u/", "user_options": {}}
        return httpx.Response(200, json={"name": "u", "servers": {"": server}})

    hub = HubClient("http://hub.invalid", "token")
    hub._http = httpx.AsyncClient(
        base_url="http://hub.invalid/hub/api", transport=httpx.MockTransport(answer)
    )
    return hub, calls


async def test_waiting_out_a_busy_hub_does_not_use_up_the_spawn_deadline() -> None:
    hub, calls = _busy_hub(refusals=6)  # 6 x 0.05 s of 429s, beyond the 0.1 s deadline
    busy, spawns = _sample("nbembed_hub_busy_total"), _sample("nbembed_hub_spawn_seconds_count")
    server = await hub.ensure_server("u", deadline_seconds=0.1, busy_seconds=30)
    assert server.path == "/user/u/"
    assert sum(1 for call in calls if call.startswith("POST")) == 7
    # The metrics an operator watches: six 429s, one spawn timed.
    assert _sample("nbembed_hub_busy_total") == busy + 6
    assert _sample("nbembed_hub_spawn_seconds_count") == spawns + 1


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_hub_busy_for_longer_than_the_busy_bound_fails_with_a_reason() -> None:
    hub, _ = _busy_hub(refusals=1000)
    with pytest.raises(HubError, match="hub busy") as raised:
        await hub.ensure_server("u", deadline_seconds=30, busy_seconds=0.2)
    assert raised.value.status == 429


async def test_the_proxys_404_while_the_hub_restarts_counts_as_unreachable() -> None:
    """A session requested then fails ``hub_unavailable`` or is retried, never ``spawn_failed``."""

    def proxy_without_route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="No route")

    hub = HubClient("http://hub.invalid", "token")
    hub._http = httpx.AsyncClient(
        base_url="http://hub.invalid/hub/api", transport=httpx.MockTransport(proxy_without_route)
    )
    with pytest.raises(HubError, match="no route") as raised:
        await hub.ensure_user("u")
    assert raised.value.status == 0


def test_the_provisioners_waits_for_the_hub_fit_its_poll_interval() -> None:
    """A handler still waiting for the hub when the poll interval ends is taken for stuck:
    its partition moves to another member, which provisions the same session again."""
    settings = ProvisionerSettings(hub_api_token="t", sync_token="t")
    waits = settings.hub_busy_seconds + settings.spawn_timeout_seconds
    assert waits + settings.hub_outage_seconds < settings.kafka_max_poll_interval_seconds
    # A burst of 100 users kept one waiting for the hub more than 180 s.
    assert settings.hub_busy_seconds > 180
    with pytest.raises(ValidationError, match="below kafka_max_poll_interval_seconds"):
        ProvisionerSettings(
            hub_api_token="t", sync_token="t", hub_busy_seconds=500, spawn_timeout_seconds=120
        )
