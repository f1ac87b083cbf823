"""Views and diffs of stored revisions, without a stack: what the sanitiser keeps and drops."""

from __future__ import annotations

import copy
from typing import Any

import nbdime
import nbformat.v4 as v4
import pytest
from nbdime.diff_utils import to_diffentry_dicts

from services.gateway import rendering


def notebook(*outputs: dict[str, Any], markdown: str = "# Title") -> dict[str, Any]:
    cells = [
        v4.new_markdown_cell(markdown, id="md"),
        v4.new_code_cell("print('the-source')", id="code", outputs=list(outputs)),
    ]
    made: dict[str, Any] = v4.new_notebook(cells=cells)
    return made


def html_output(markup: str) -> dict[str, Any]:
    made: dict[str, Any] = v4.new_output(
        "display_data", data={"text/html": markup, "text/plain": "fallback"}
    )
    return made


@pytest.mark.parametrize(
    ("markup", "gone"),
    [
        ("<script>alert(1)</script>", "alert(1)"),
        ('<img src="x" onerror="alert(2)">', "onerror"),
        ('<a href="javascript:alert(3)">x</a>', "javascript:"),
        ('<a href="  JAVASCRIPT:alert(4)">x</a>', "alert(4)"),
        ('<iframe src="https://example.com" srcdoc="x"></iframe>', "<iframe"),
        ('<svg onload="alert(5)"></svg>', "alert(5)"),
        ('<form action="/x"><input name="a"></form>', "<form"),
        ('<a href="data:text/html,<script>alert(6)</script>">x</a>', "data:text/html"),
        ("<style>body{background:url(https://tracker.example)}</style>", "tracker"),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example">', "evil.example"),
        ('<object data="x.swf"></object><embed src="x.swf">', "x.swf"),
        ('<base href="https://evil.example/">', "<base"),
    ],
)
def test_active_markup_in_outputs_is_removed(markup: str, gone: str) -> None:
    page = rendering.render_html(notebook(html_output(f"<b>kept</b>{markup}")), title="t")
    body = page[page.index("<body>") :]
    assert "<b>kept</b>" in body
    assert gone.lower() not in body.lower()


def test_raw_html_in_markdown_is_sanitised_too() -> None:
    page = rendering.render_html(
        notebook(markdown='# Hi\n<img src=x onerror="alert(1)"> [l](javascript:alert(2))'),
        title="t",
    )
    assert "Hi" in page and "onerror" not in page and "javascript:" not in page


def test_images_stay_and_javascript_and_widget_outputs_do_not() -> None:
    png = v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})
    js = v4.new_output("display_data", data={"application/javascript": "alert(7)"})
    view = {"model_id": "widget-model-id", "version_major": 2}
    widget = v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": view})
    doc = notebook(png, js, widget)
    doc["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    page = rendering.render_html(doc, title="t")
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page
    assert "alert(7)" not in page and "widget-model-id" not in page
    assert "<script" not in page


def test_without_outputs_the_view_shows_cells_only() -> None:
    printed = v4.new_output("stream", name="stdout", text="the-secret-output\n")
    page = rendering.render_html(notebook(printed), title="t", outputs=False)
    assert "the-source" in page and "Title" in page
    assert "the-secret-output" not in page
    assert "Outputs are not shown" in page


def test_the_title_is_escaped_and_the_page_carries_its_csp() -> None:
    page = rendering.render_html(notebook(), title="<script>x</script>")
    assert "<title>&lt;script&gt;x&lt;/script&gt;</title>" in page
    assert "default-src 'none'" in page


def test_a_diff_applied_to_the_older_revision_gives_the_newer() -> None:
    before = notebook(v4.new_output("stream", name="stdout", text="1\n"))
    after = copy.deepcopy(before)
    after["cells"][1]["source"] = "print('changed')"
    after["cells"][1]["outputs"][0]["text"] = "changed\n"
    after["cells"][1]["outputs"].append(v4.new_output("display_data", data={"text/html": "<b>"}))
    after["cells"].append(v4.new_markdown_cell("new", id="new"))
    entries = rendering.diff(before, after)
    assert entries and entries[0]["key"] == "cells"
    assert nbdime.patch(before, to_diffentry_dicts(entries)) == after
    assert rendering.diff(before, copy.deepcopy(before)) == []


def test_the_view_cache_keeps_the_newest_entries() -> None:
    cache = rendering.ViewCache(2)
    for n in range(3):
        cache.put(("nb", n, "sha", True), f"page {n}")
    assert cache.get(("nb", 0, "sha", True)) is None
    assert cache.get(("nb", 2, "sha", True)) == "page 2"
    rendering.ViewCache(0).put(("nb", 1, "sha", True), "x")
