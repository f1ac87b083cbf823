"""Every security test attacks the running stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from infra.settings import StackSettings
from tests.browser.conftest import launch_chromium


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of per-user origins run only on a stack in that mode (tests/run.sh runs
    them in a second invocation): elsewhere they are deselected, not skipped."""
    if StackSettings().per_user_origins:
        return
    chosen = [item for item in items if item.get_closest_marker("per_user_origins") is None]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's chromium, for attacks that need a real browser (a fresh one per test)."""
    async with launch_chromium() as browser:
        yield browser
