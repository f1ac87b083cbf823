"""Every security test attacks the running stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from infra.settings import StackSettings
from tests.browser.conftest import launch_chromium


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's chromium, for attacks that need a real browser (a fresh one per test)."""
    async with launch_chromium() as browser:
        yield browser
