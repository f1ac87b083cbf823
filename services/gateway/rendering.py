"""Stored revisions as a reader sees them: a notebook-aware diff (nbdime) and sanitised HTML.

Pure functions of stored content, run off the event loop by the routes: no
Jupyter server, no kernel. Outputs are what the user's code printed, so the
HTML is treated as hostile: nbconvert renders it, then the whole body goes
through an allowlist sanitiser (nh3), which keeps no script, no event
handler, no ``javascript:`` URL, no iframe, no form, no style sheet of the
notebook's own; the gateway adds a strict CSP and a sandbox on top.
"""

from __future__ import annotations

import copy
import html
import threading
from collections import OrderedDict
from functools import cache
from typing import TYPE_CHECKING, Any

import nh3

if TYPE_CHECKING:
    from nbconvert import HTMLExporter

VIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
"""The view's Content-Security-Policy: nothing loads or runs but its own inline styles and
data: images; ``sandbox`` gives the document an opaque origin even when opened top-level."""

IMAGE_TYPES = (
    "data:image/png;",
    "data:image/jpeg;",
    "data:image/gif;",
    "data:image/webp;",
    "data:image/svg+xml;",
)
"""The only data: URLs kept, as images' sources (how nbconvert inlines images): an SVG shown
through ``<img>`` runs no script and loads nothing."""

_TAGS = nh3.ALLOWED_TAGS | {"tfoot"}
_ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, "*": {"class", "id", "title"}}
_SCHEMES = {"http", "https", "mailto", "data"}
_CELL_OUTPUT_DROPPED = (
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)


def _attribute(element: str, attribute: str, value: str) -> str | None:
    """Keep data: URLs only as raster images' sources."""
    if value.strip().lower().startswith("data:"):
        allowed = element == "img" and attribute == "src"
        return value if allowed and value.strip().lower().startswith(IMAGE_TYPES) else None
    return value


def sanitise(fragment: str) -> str:
    """An HTML fragment with only inert markup left (allowlist of tags, attributes, URLs)."""
    return nh3.clean(
        fragment,
        tags=_TAGS,
        clean_content_tags={"script", "style", "template", "noscript"},
        attributes=_ATTRIBUTES,
        attribute_filter=_attribute,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


@cache
def _exporter() -> HTMLExporter:
    """nbconvert's HTML exporter with the bare template (loading it costs ~1 s, once)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="basic", exclude_input_prompt=False)


_EXPORT_LOCK = threading.Lock()
"""One export at a time: the exporter and its Jinja environment are shared."""


@cache
def _stylesheet() -> str:
    from pygments.formatters import HtmlFormatter

    base = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:60em;"
        "padding:0 1em;color:#1f2328}"
        ".cell{margin:0 0 1em}.input_prompt,.prompt{display:none}"
        ".input_area{background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;"
        "padding:.4em .6em;overflow-x:auto}"
        ".output_subarea{padding:.3em .6em;overflow-x:auto}pre{margin:0;white-space:pre-wrap}"
        ".output_stderr{background:#fff5f5}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.2em .5em}"
        ".nbembed-note{color:#57606a;font-style:italic}"
    )
    return base + str(HtmlFormatter().get_style_defs(".highlight"))


def warm() -> None:
    """Load nbconvert and its template now, so the first view is as fast as the next."""
    import nbformat.v4 as v4

    output = v4.new_output("display_data", data={"text/plain": "1", "text/html": "<b>1</b>"})
    cells = [v4.new_code_cell("print(1)", outputs=[output]), v4.new_markdown_cell("# *a*")]
    render_html(v4.new_notebook(cells=cells), title="")


def _without_active_content(notebook: dict[str, Any], outputs: bool) -> dict[str, Any]:
    """A copy to render: no widget state, no JavaScript outputs, and no outputs at all if asked."""
    doc = copy.deepcopy(notebook)
    doc.get("metadata", {}).pop("widgets", None)
    for cell in doc.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if not outputs:
            cell["outputs"] = []
            cell["execution_count"] = None
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if isinstance(data, dict):
                for mime in _CELL_OUTPUT_DROPPED:
                    data.pop(mime, None)
                if not data:
                    continue
            kept.append(output)
        cell["outputs"] = kept
    return doc


def render_html(notebook: dict[str, Any], *, title: str, outputs: bool = True) -> str:
    """A whole HTML page of the notebook, inert; without outputs when ``outputs`` is off."""
    import nbformat

    node = nbformat.from_dict(_without_active_content(notebook, outputs))
    with _EXPORT_LOCK:
        body, _ = _exporter().from_notebook_node(node)
    note = ""
    if not outputs:
        note = '<p class="nbembed-note">Outputs are not shown (restricted data).</p>'
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{VIEW_CSP.replace("; sandbox", "")}">'
        f"<title>{html.escape(title)}</title><style>{_stylesheet()}</style></head>"
        f"<body>{note}{sanitise(body)}</body></html>"
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """nbdime's notebook-aware diff from ``before`` to ``after`` (its JSON diff format)."""
    import nbdime
    import nbformat
    from nbdime.diff_utils import to_clean_dicts

    # nbdime reads outputs by attribute: it needs nbformat's nodes, not plain dicts.
    a, b = nbformat.from_dict(before), nbformat.from_dict(after)
    entries: list[dict[str, Any]] = to_clean_dicts(nbdime.diff_notebooks(a, b))
    return entries


class ViewCache:
    """Rendered views by (notebook, revision, digest, outputs): revisions never change."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._views: OrderedDict[tuple[str, int, str, bool], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str, bool]) -> str | None:
        with self._lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
            return found

    def put(self, key: tuple[str, int, str, bool], view: str) -> None:
        if self._entries == 0:
            return
        with self._lock:
            self._views[key] = view
            self._views.move_to_end(key)
            while len(self._views) > self._entries:
                self._views.popitem(last=False)
