"""Fixtures shared by the suites; the real stack is started once per run unless up.

If the developer already ran ``make up``, the tests use that stack and leave it
running; otherwise they start it and stop it at the end of the run.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra import kafka, stack, store
from infra.settings import StackSettings
from tests import failure_snapshot

logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test of the running stack also reports the stack's state (failure_snapshot)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed and "running_stack" in item.fixturenames:
        settings = item.funcargs.get("running_stack") or item.funcargs.get("stack_settings")
        if isinstance(settings, StackSettings):
            report.sections.append(("stack when it failed", failure_snapshot.snapshot(settings)))


TEST_REPLICAS = 2
"""Replicas of each service in the stack the suite starts, unless NBEMBED_STACK_REPLICAS says
otherwise: every run proves that nothing depends on one replica seeing every event or request."""


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    settings = stack.adopt_running_replicas(StackSettings())  # a stack left up: as it runs
    if "replicas" not in settings.model_fields_set:
        settings = settings.model_copy(update={"replicas": TEST_REPLICAS})
    return settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``takes_the_stack_down`` run after every other test of the run."""
    last = [item for item in items if item.get_closest_marker("takes_the_stack_down")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def stack_was_up(stack_settings: StackSettings) -> bool:
    """A stack was running before the tests began (``make up``): they leave it running."""
    return all(stack.status(stack_settings).values())


@pytest.fixture(scope="session")
def running_stack(stack_settings: StackSettings, stack_was_up: bool) -> Iterator[StackSettings]:
    """The whole stack, answering."""
    if not stack_was_up:
        stack.up(stack_settings)
    yield stack_settings
    if not stack_was_up:
        problems = stack.down(stack_settings)
        assert not problems, problems


@pytest.fixture(scope="session")
def kafka_options(running_stack: StackSettings) -> dict[str, Any]:
    """aiokafka arguments to reach the stack's Kafka as its admin (a super user).

    Tests that talk to Kafka directly spread these into their clients; the
    services' own principals are ``kafka.client_options(settings, "sync")`` etc.
    """
    return kafka.client_options(running_stack)


@pytest.fixture(scope="session")
def hub_token(stack_settings: StackSettings) -> str:
    return stack_settings.service_token_file.read_text().strip()


@pytest.fixture(scope="session")
def api_key(stack_settings: StackSettings) -> str:
    """The API key of the first demo tenant."""
    return stack.api_key_file(stack_settings, stack_settings.tenants[0]).read_text().strip()


@pytest.fixture(scope="session")
def other_api_key(stack_settings: StackSettings) -> str:
    """The API key of the second demo tenant."""
    return stack.api_key_file(stack_settings, stack_settings.tenants[1]).read_text().strip()


@pytest.fixture
async def hub(stack_settings: StackSettings, hub_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's REST API with the nbembed service token."""
    async with httpx.AsyncClient(
        base_url=f"{stack_settings.public_hub_url}/hub/api",
        headers={"Authorization": f"token {hub_token}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture
async def gateway(stack_settings: StackSettings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway API as the first demo tenant."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack_settings.gateway_port}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture
async def mongo(stack_settings: StackSettings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """The store with the stack's admin credential (every test goes through this helper)."""
    client = store.admin_client(stack_settings, serverSelectionTimeoutMS=5000)
    yield client
    await client.close()
