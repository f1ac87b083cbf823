"""A real browser (Debian's chromium, driven by Playwright) on the demo host page."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence

import pytest
from playwright.async_api import Browser, Page, async_playwright

from infra.settings import StackSettings

# The flags this closed network needs (no background fetches, no QUIC), headless, as root.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack


@contextlib.asynccontextmanager
async def launch_chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """Debian's chromium under Playwright, with the flags above (never a downloaded browser)."""
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: infra/install.sh installs Debian's package"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args]
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) and page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    yield page
    await context.close()
