"""A Jupyter server extension that trims the embedded page to the notebook (and, restricted, more).

Loaded in every single-user server by the spawner
(``--ServerApp.jpserver_extensions=nbembed_embed=True``). Three things:

- The page config of every Lab and Notebook 7 page gets ``disabledExtensions``:
  in every embed the ways out of the iframe (Hub Control Panel, Log Out, the
  "JupyterLab" button and its menu entry, File > Open… into a new tab); in
  restricted-data mode also Download, Save and Export As, Print, Open in a new
  browser tab, the file browser's download and terminals. The list is added
  through JupyterLab's ``page_config_hook`` (after JupyterHub's own hook), not
  ``page_config_data``, which the page's own ``disabledExtensions`` overwrites.
- ``GET /api/nbconvert``, which every notebook page asks as it loads, answers
  from the export formats worked out once per server (`ExportersHandler`).
- In restricted mode (the server's authorizer is `RestrictedAuthorizer`), the
  terminal routes, which the spawner turns off (404), answer 403 like every
  other refused route, and ``/files/``, ``/view/`` and ``/nbconvert/`` get
  handlers of their own that answer 403 before the built-in ones are reached
  (the authorizer already refuses them: two locks on the same doors).

Hiding a button is cosmetic; the server's refusals are the gate.

Restricted-data mode itself is `RestrictedAuthorizer` below: the hub's spawner
starts a restricted server with
``--ServerApp.authorizer_class=nbembed_embed.RestrictedAuthorizer`` (see
``infra/hub/server_mode.py``); nothing the user can edit selects it (the
server's command line and environment come from the spawner, and
``disable_user_config`` keeps ``~/.jupyter`` out). Jupyter Server asks the
authorizer about every request to a handler decorated ``@authorized`` (files,
view, nbconvert, contents, terminals, kernels, ...): a refusal is a 403.

What stays open is what the notebook needs to open, run and save: kernels,
sessions, notebooks through the contents API (read and write), directory
listings and file metadata (``content=0``), and writes of any file (data comes
in). What is closed is every route that hands a file's bytes, or an export of
a notebook, to the browser: ``/files/``, ``/view/``, ``/nbconvert/``,
``/api/nbconvert``, contents reads of anything that is neither a directory
nor a notebook, and terminals. `ROUTES` is the table the README shows and the
browser test checks, route by route, on a restricted and an unrestricted server.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from anyio.to_thread import run_sync
from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.services.nbconvert.handlers import NbconvertRootHandler
from jupyter_server.utils import url_path_join
from tornado import web

log = logging.getLogger("nbembed.embed")


CLOSED_RESOURCES = frozenset({"nbconvert", "terminals"})
"""Jupyter Server's resource names refused whatever the route or method."""

CLOSED_PREFIXES = frozenset({"files", "view", "nbconvert"})
"""First segments of routes (after the server's base URL) that serve bytes or exports."""

CONTENTS_API = "api/contents"
_CHECKPOINTS = re.compile(r"(^|/)checkpoints(/[\w-]+)?$")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Verdict(enum.Enum):
    """What the authorizer does with one request."""

    ALLOW = "allow"
    DENY = "deny"
    ONLY_DIRECTORY = "only-directory"
    """Allowed unless a file is there, and then read as a directory (never as a file)."""


def decide(method: str, route: str, resource: str, query: Mapping[str, str]) -> Verdict:
    """The restricted-mode decision for one request, without touching the disk.

    ``route`` is the request's path after the server's base URL, percent-decoded
    (``api/contents/work/x.csv``); ``resource`` is Jupyter Server's name for
    what the handler serves; ``query`` holds the last value of each query
    argument, as the handlers read them.
    """
    route = route.lstrip("/")
    if resource in CLOSED_RESOURCES or route.split("/", 1)[0] in CLOSED_PREFIXES:
        return Verdict.DENY
    if resource != "contents" or method.upper() not in _READS:
        return Verdict.ALLOW  # kernels, sessions, settings...; writes bring data in
    if route != CONTENTS_API and not route.startswith(CONTENTS_API + "/"):
        return Verdict.DENY  # any other reader of files' bytes
    return _contents_read(route[len(CONTENTS_API) :].strip("/"), query)


def _contents_read(path: str, query: Mapping[str, str]) -> Verdict:
    """A read through the contents API: notebooks, directories and metadata only."""
    if _CHECKPOINTS.search(path) or query.get("content", "1") == "0":
        return Verdict.ALLOW  # checkpoint lists and file models without their content
    kind = query.get("type")
    if kind == "directory" or path.endswith(".ipynb") or (path == "" and kind is None):
        # A directory read of a file fails (400); a notebook is what the page edits.
        return Verdict.ALLOW
    if kind is None:
        return Verdict.ONLY_DIRECTORY
    return Verdict.DENY


class RestrictedAuthorizer(Authorizer):
    """Refuses downloads and exports (403); allows whatever `decide` allows."""

    async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        """Jupyter Server's hook: True lets the request through, False answers 403."""
        request = handler.request
        route = _route(unquote(request.path), handler.base_url)
        query = {name: values[-1].decode() for name, values in request.query_arguments.items()}
        verdict = decide(request.method, route, resource, query)
        if verdict is Verdict.ONLY_DIRECTORY:
            verdict = await _as_directory(handler, route[len(CONTENTS_API) :].strip("/"))
        if verdict is Verdict.DENY:
            refused(request.method, request.path, f"{action} {resource}")
            return False
        return True


def refused(method: str, path: str, why: str = "route closed") -> None:
    """Log a refused download or export and put it on the tenant's audit trail."""
    log.warning("nbembed restricted mode refused %s %s (%s)", method, path, why)
    try:
        import nbembed_audit  # type: ignore[import-not-found]  # beside it on a user server
    except ImportError:
        return
    nbembed_audit.report_audit("download.refused", {"method": method, "path": path[:512]})


def _route(path: str, base_url: str) -> str:
    """The request path after the server's base URL (``/user/<name>/``)."""
    return path[len(base_url) :] if path.startswith(base_url) else path.lstrip("/")


async def _as_directory(handler: Any, path: str) -> Verdict:
    """Allow a contents read of ``path`` only as a directory listing.

    A file there is refused (403). Anything else (a directory, or nothing yet:
    sync lists a folder before creating it and expects 404) is read with
    ``type=directory`` forced, so a file that a kernel puts there between this
    check and the read fails (400) instead of handing its bytes over.
    """
    if await ensure_async(handler.contents_manager.file_exists(path)):
        return Verdict.DENY
    handler.request.query_arguments["type"] = [b"directory"]
    return Verdict.ALLOW


@dataclass(frozen=True)
class Route:
    """One row of the README's table: a route and its status in each mode."""

    path: str
    restricted: int
    unrestricted: int
    what: str


ROUTES: tuple[Route, ...] = (
    Route("/files/work/inputs/data.csv", 403, 200, "an input file's bytes"),
    Route("/view/work/inputs/data.csv", 403, 200, "a file shown in a page"),
    Route("/nbconvert/script/work/{notebook}", 403, 200, "a notebook exported"),
    Route("/api/nbconvert", 403, 200, "the export formats"),
    Route("/api/contents/work/inputs/data.csv", 403, 200, "a file's content"),
    Route("/api/contents/work/inputs/data.csv?type=file&format=base64", 403, 200, "its bytes"),
    Route("/api/terminals", 403, 200, "terminals (the spawner also turns them off)"),
    Route("/terminals/1", 403, 200, "the terminal page"),
    Route("/api/contents/work/inputs/data.csv?content=0", 200, 200, "a file's name, size, dates"),
    Route("/api/contents/work", 200, 200, "a folder's listing"),
    Route("/api/contents/work/{notebook}", 200, 200, "the notebook (the page needs it)"),
    Route("/notebooks/work/{notebook}", 200, 200, "the notebook's page"),
)
"""The routes the mode changes (first rows) and what it keeps open (last rows)."""


def routes_table() -> str:
    """`ROUTES` as the README's Markdown table (a unit test keeps the README equal)."""
    lines = [
        "| path on the user's server | restricted | unrestricted | what it gives |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{r.path}` | {r.restricted} | {r.unrestricted} | {r.what} |" for r in ROUTES]
    return "\n".join(lines)


EMBED_DISABLED = (
    "@jupyterlab/hub-extension:menu",  # File > Hub Control Panel, Log Out
    "@jupyterlab/hub-extension:plugin",  # the hub:control-panel and hub:logout commands
    "@jupyter-notebook/lab-extension:interface-switcher",  # "JupyterLab" button and menu
    "@jupyter-notebook/lab-extension:launch-tree",  # View > File Browser (a new tab)
    "@jupyter-notebook/notebook-extension:open-tree-tab",  # File > Open… (a new tab)
    "@jupyter-notebook/application-extension:pages",  # Open JupyterLab, File Browser (tabs)
)
"""Disabled in every embedded page: the hub's and Lab's ways out of the iframe."""

RESTRICTED_DISABLED = (
    "@jupyterlab/docmanager-extension:download",  # File > Download
    "@jupyterlab/docmanager-extension:open-browser-tab",  # Open in New Browser Tab
    "@jupyterlab/filebrowser-extension:download",  # the file browser's Download
    "@jupyterlab/filebrowser-extension:open-browser-tab",
    "@jupyterlab/filebrowser-extension:share-file",  # Copy Shareable Link
    "@jupyterlab/notebook-extension:export",  # File > Save and Export Notebook As
    "@jupyterlab/apputils-extension:print",  # File > Print
    "@jupyterlab/terminal-extension",  # every terminal plugin
    "@jupyter-notebook/terminal-extension",
)
"""Also disabled in restricted-data mode: every download, export and terminal entry."""

REFUSED_ROUTES = (r"/files/.*", r"/view/.*", r"/nbconvert/.*", r"/api/terminals.*", r"/terminals.*")
"""Routes answered 403 by this extension in restricted mode, whatever the method."""

PageConfigHook = Callable[[Any, dict[str, Any]], dict[str, Any]]


def disabled_plugins(restricted: bool) -> list[str]:
    """The plugins an embedded page must not load in this mode."""
    return [*EMBED_DISABLED, *(RESTRICTED_DISABLED if restricted else ())]


def with_disabled(page_config: dict[str, Any], restricted: bool) -> dict[str, Any]:
    """``page_config`` with this mode's plugins added to ``disabledExtensions``."""
    current = list(page_config.get("disabledExtensions") or [])
    page_config["disabledExtensions"] = current + [
        plugin for plugin in disabled_plugins(restricted) if plugin not in current
    ]
    # JupyterLab's own File > Log Out and Shut Down show when this is true.
    page_config["quitButton"] = False
    if restricted:
        page_config["terminalsAvailable"] = False
    return page_config


class RefusedHandler(web.RequestHandler):
    """403 for every method: a route restricted-data mode closes."""

    def prepare(self) -> None:
        refused(self.request.method, self.request.path)
        raise web.HTTPError(403, "closed in restricted-data mode")


class ExportersHandler(NbconvertRootHandler):
    """``GET /api/nbconvert`` (the export formats) worked out once per server, not per page.

    Every notebook page asks for it as it loads, for File > Save and Export
    Notebook As. Jupyter Server finds nbconvert's exporters through their entry
    points again on each request: 0.6 s of the server's CPU in the middle of the
    page's load, beside its contents reads and kernel connection, on the cores
    the browser needs. The installed exporters do not change while the server
    runs. Same resource (``nbconvert``), same authorization as the built-in one.
    """

    _answer: str | None = None

    @web.authenticated
    @authorized
    async def get(self) -> None:
        cls = type(self)
        async with self._exporter_lock:
            if cls._answer is None:
                cls._answer = json.dumps(await run_sync(export_formats))
        self.set_header("Content-Type", "application/json")
        self.finish(cls._answer)


def export_formats() -> dict[str, dict[str, str | None]]:
    """Each installed exporter's name and output MIME type, as Jupyter Server answers them."""
    from nbconvert.exporters import base

    formats: dict[str, dict[str, str | None]] = {}
    for name in base.get_export_names():  # type: ignore[no-untyped-call]
        try:
            exporter = base.get_exporter(name)  # type: ignore[no-untyped-call]
        except ValueError:  # uninstalled since the names were read
            continue
        formats[name] = {"output_mimetype": exporter.output_mimetype}
    return formats


def is_restricted(serverapp: Any) -> bool:
    """Whether the spawner started this server in restricted-data mode."""
    return isinstance(serverapp.authorizer, RestrictedAuthorizer)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbembed_embed"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register handlers ahead of the built-in ones: the export formats computed once,
    or in restricted mode, which has no exports, the refusing handlers."""
    base_url = serverapp.web_app.settings["base_url"]
    if not is_restricted(serverapp):
        serverapp.web_app.add_handlers(
            ".*$", [(url_path_join(base_url, "/api/nbconvert"), ExportersHandler)]
        )
        return
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base_url, route), RefusedHandler) for route in REFUSED_ROUTES]
    )
    serverapp.log.info("nbembed: restricted-data mode, download and export routes closed")


async def _start_jupyter_server_extension(serverapp: Any) -> None:
    """Wrap the page config hook once every extension (JupyterHub's included) has set its own."""
    settings = serverapp.web_app.settings
    previous: PageConfigHook | None = settings.get("page_config_hook")
    restricted = is_restricted(serverapp)

    def page_config_hook(handler: Any, page_config: dict[str, Any]) -> dict[str, Any]:
        if previous is not None:
            page_config = previous(handler, page_config)
        return with_disabled(page_config, restricted)

    settings["page_config_hook"] = page_config_hook
