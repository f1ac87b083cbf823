"""Restricted-data mode's decisions, without a server: authorizer, spawn options, session mode."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.hub import server_mode
from services.gateway.api import effective_mode
from services.gateway.problems import Problem
from services.gateway.tenants import Tenant

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra" / "hub" / "singleuser_python"))

import nbembed_embed as embed  # noqa: E402  (a top-level module on the servers' path)
from nbembed_embed import Verdict, decide  # noqa: E402

ALLOW, DENY, ONLY_DIR = Verdict.ALLOW, Verdict.DENY, Verdict.ONLY_DIRECTORY


@pytest.mark.parametrize(
    ("method", "route", "resource", "query", "verdict"),
    [
        # every download and export route
        ("GET", "files/work/data.csv", "contents", {}, DENY),
        ("HEAD", "files/work/data.csv", "contents", {}, DENY),
        ("GET", "files/work/report.ipynb", "contents", {}, DENY),
        ("GET", "view/work/data.csv", "contents", {}, DENY),
        ("GET", "nbconvert/html/work/report.ipynb", "nbconvert", {}, DENY),
        ("GET", "api/nbconvert", "nbconvert", {}, DENY),
        ("POST", "api/terminals", "terminals", {}, DENY),
        ("GET", "api/terminals", "terminals", {}, DENY),
        # contents reads of anything that is neither a notebook nor a directory
        ("GET", "api/contents/work/data.csv", "contents", {"type": "file"}, DENY),
        ("GET", "api/contents/work/data.csv", "contents", {"format": "base64"}, ONLY_DIR),
        ("GET", "api/contents/work/data.csv", "contents", {"type": "notebook"}, DENY),
        ("GET", "api/contents/work/data.csv", "contents", {"content": "1"}, ONLY_DIR),
        ("GET", "api/contents/work/data.csv", "contents", {}, ONLY_DIR),
        ("GET", "api/contents/work/REPORT.IPYNB", "contents", {"type": "file"}, DENY),
        # a contents-resource handler on another route (a file server of some extension)
        ("GET", "some-extension/raw/data.csv", "contents", {}, DENY),
        # what the notebook needs
        ("GET", "api/contents/work/report.ipynb", "contents", {"type": "notebook"}, ALLOW),
        ("GET", "api/contents/work/report.ipynb", "contents", {"format": "base64"}, ALLOW),
        ("GET", "api/contents/work/data.csv", "contents", {"content": "0"}, ALLOW),
        ("GET", "api/contents/work", "contents", {"type": "directory"}, ALLOW),
        ("GET", "api/contents", "contents", {}, ALLOW),
        ("GET", "api/contents/work/data.csv/checkpoints", "contents", {}, ALLOW),
        ("PUT", "api/contents/work/report.ipynb", "contents", {}, ALLOW),
        ("PUT", "api/contents/work/upload.csv", "contents", {}, ALLOW),
        ("PATCH", "api/contents/work/report.ipynb", "contents", {}, ALLOW),
        ("GET", "api/kernels", "kernels", {}, ALLOW),
        ("GET", "api/sessions", "sessions", {}, ALLOW),
        ("GET", "notebooks/work/report.ipynb", "contents", {}, DENY),
    ],
)
def test_the_authorizer_closes_downloads_and_keeps_the_notebook(
    method: str, route: str, resource: str, query: dict[str, str], verdict: Verdict
) -> None:
    assert decide(method, route, resource, query) is verdict


def test_a_leading_slash_changes_nothing() -> None:
    assert decide("GET", "/files/x.csv", "contents", {}) is DENY
    assert decide("GET", "/api/contents/x.ipynb", "contents", {}) is ALLOW


class _Manager:
    def __init__(self, files: set[str]) -> None:
        self.files = files

    async def file_exists(self, path: str) -> bool:
        return path in self.files


def _handler(path: str, query: dict[str, list[bytes]], files: set[str]) -> Any:
    request = SimpleNamespace(method="GET", path=path, query_arguments=query)
    return SimpleNamespace(request=request, base_url="/user/u/", contents_manager=_Manager(files))


async def test_a_directory_is_read_as_a_directory_and_a_file_is_refused() -> None:
    authorizer = embed.RestrictedAuthorizer()
    files = {"work/data.csv"}
    for folder in ("work", "not-yet"):  # an absent folder answers 404, as sync expects
        listing = _handler(f"/user/u/api/contents/{folder}", {}, files)
        assert await authorizer.is_authorized(listing, None, "read", "contents")
        # Pinned to a directory listing: a file swapped in later fails (400).
        assert listing.request.query_arguments["type"] == [b"directory"]
    data = _handler("/user/u/api/contents/work/data.csv", {}, files)
    assert not await authorizer.is_authorized(data, None, "read", "contents")


async def test_the_last_query_value_counts_as_the_handler_reads_it() -> None:
    authorizer = embed.RestrictedAuthorizer()
    sneaky = _handler(
        "/user/u/api/contents/data.csv", {"content": [b"0", b"1"], "type": [b"file"]}, set()
    )
    assert not await authorizer.is_authorized(sneaky, None, "read", "contents")
    encoded = _handler("/user/u/%66iles/data.csv", {}, set())
    assert not await authorizer.is_authorized(encoded, None, "read", "contents")


def test_every_embed_loses_the_escape_hatches_and_restricted_loses_downloads() -> None:
    page = embed.with_disabled({"disabledExtensions": ["x:y"]}, restricted=False)
    assert "@jupyterlab/hub-extension:menu" in page["disabledExtensions"]
    assert "@jupyter-notebook/lab-extension:interface-switcher" in page["disabledExtensions"]
    assert "@jupyterlab/docmanager-extension:download" not in page["disabledExtensions"]
    assert page["disabledExtensions"][0] == "x:y"
    strict = embed.with_disabled({}, restricted=True)
    for plugin in (
        "@jupyterlab/docmanager-extension:download",
        "@jupyterlab/notebook-extension:export",
        "@jupyterlab/apputils-extension:print",
        "@jupyterlab/terminal-extension",
    ):
        assert plugin in strict["disabledExtensions"]
    assert strict["terminalsAvailable"] is False


def test_the_readme_shows_the_routes_table() -> None:
    assert embed.routes_table() in (REPO / "README.md").read_text()


@pytest.mark.parametrize(
    ("options", "restricted"),
    [
        ({"restricted": True}, True),
        ({"restricted": False}, False),
        ({"restricted": "true"}, False),  # only a literal true counts; the provisioner sends one
        ({}, False),
        (None, False),
    ],
)
def test_spawn_options_choose_the_servers_mode(
    options: dict[str, Any] | None, restricted: bool
) -> None:
    spawner = SimpleNamespace(args=[], environment={}, log=SimpleNamespace(info=print))
    spawner._log_name = "u"
    hook = server_mode.apply_user_options_hook(["--base"], {"A": "1"})
    hook(spawner, options)
    assert spawner.args[0] == "--base"
    assert ("--ServerApp.jpserver_extensions=nbembed_embed=True" in spawner.args) is True
    has_authorizer = any("RestrictedAuthorizer" in arg for arg in spawner.args)
    assert has_authorizer is restricted
    assert ("--ServerApp.terminals_enabled=False" in spawner.args) is restricted
    assert spawner.environment == {"A": "1", "NBEMBED_RESTRICTED": "1" if restricted else "0"}


def test_a_spawner_reused_after_a_restricted_spawn_starts_open_again() -> None:
    spawner = SimpleNamespace(args=[], environment={}, log=SimpleNamespace(info=print))
    spawner._log_name = "u"
    hook = server_mode.apply_user_options_hook(["--base"], {})
    hook(spawner, {"restricted": True})
    hook(spawner, {"restricted": False})
    assert spawner.args == ["--base", *server_mode.EMBED_ARGS]


def _tenant(restricted: bool) -> Tenant:
    return Tenant(id="acme", api_key_sha256="0" * 64, restricted=restricted)


@pytest.mark.parametrize(
    ("tenant", "asked", "mode"),
    [(False, None, False), (False, False, False), (False, True, True), (True, None, True)],
)
def test_a_session_may_be_stricter_than_its_tenant(
    tenant: bool, asked: bool | None, mode: bool
) -> None:
    assert effective_mode(_tenant(tenant), asked) is mode


def test_a_session_may_not_be_weaker_than_its_tenant() -> None:
    with pytest.raises(Problem) as refused:
        effective_mode(_tenant(True), False)
    assert refused.value.status == 422
