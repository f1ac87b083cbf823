"""A host page's iframe on a session, as the SDK mounts it, and the notebook's first cell."""

from __future__ import annotations

from playwright.async_api import FrameLocator, Locator, Page

FRAME_ID = "nbembed-frame"

MOUNT = """([id, src]) => {
    document.getElementById(id)?.remove();
    const frame = document.createElement("iframe");
    frame.id = id;
    frame.style.width = "1200px";
    frame.style.height = "800px";
    frame.src = src;
    document.body.append(frame);
    return Date.now() / 1000;
}"""


async def mount(page: Page, iframe_url: str) -> float:
    """Put the session's iframe on ``page`` (an allowed host page); when, in epoch seconds."""
    mounted: float = await page.evaluate(MOUNT, [FRAME_ID, iframe_url])
    return mounted


def notebook(page: Page) -> FrameLocator:
    return page.frame_locator(f"#{FRAME_ID}")


def first_editor(frame: FrameLocator) -> Locator:
    return frame.locator(".jp-Cell .cm-content").first


def first_prompt(frame: FrameLocator) -> Locator:
    """The first cell's ``[ ]:`` prompt: ``[*]:`` once a run was accepted, ``[1]:`` when done."""
    return frame.locator(".jp-Cell").first.locator(".jp-InputPrompt")


def output_with(frame: FrameLocator, text: str) -> Locator:
    return frame.locator(".jp-OutputArea-output", has_text=text).first
