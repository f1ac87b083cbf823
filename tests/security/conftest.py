"""Every security test attacks the running stack."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from infra.settings import StackSettings
from tests.browser.conftest import CHROMIUM_ARGS


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's chromium, for attacks that need a real browser (a fresh one per test)."""
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: infra/install.sh installs Debian's package"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
