"""Profiles: a tenant's environments, how a session's name resolves, what reaches the spawner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from infra import kernels
from infra.hub import server_mode
from infra.settings import StackSettings
from nbembed.admin import _parser, _request
from schemas import Profile
from schemas.profiles import server_options_of
from services.gateway.api import resolve_profile
from services.gateway.problems import Problem
from services.gateway.tenants import Tenant, load_file
from services.sync import notebooks

PYTHON = Profile(name="python", display_name="Python 3")
DATA = Profile(name="data", display_name="Data", kernel="nbembed-data", mem_limit="2G")


def tenant(profiles: list[Profile], default: str | None = None) -> Tenant:
    digest = hashlib.sha256(b"k").hexdigest()
    return Tenant(id="demo", api_key_sha256=digest, profiles=profiles, default_profile=default)


def test_a_session_gets_the_named_profile_or_the_default_or_none() -> None:
    assert tenant([PYTHON, DATA]).profile("data") == DATA
    assert tenant([PYTHON, DATA]).profile(None) == PYTHON  # the first
    assert tenant([PYTHON, DATA], default="data").profile(None) == DATA
    assert tenant([]).profile(None) is None


def test_an_unknown_profile_is_a_422_that_names_the_tenants_profiles() -> None:
    with pytest.raises(Problem) as refused:
        resolve_profile(tenant([PYTHON, DATA]), "gpu")
    assert refused.value.status == 422
    assert "python, data" in refused.value.detail
    with pytest.raises(Problem):
        resolve_profile(tenant([]), "python")  # a tenant without profiles has none to name


def test_a_tenants_profiles_must_be_consistent() -> None:
    with pytest.raises(ValidationError, match="unique"):
        tenant([PYTHON, PYTHON])
    with pytest.raises(ValidationError, match="not a profile"):
        tenant([PYTHON], default="data")


@pytest.mark.parametrize(
    "fields",
    [
        {"kernel": "python3 --debug"},
        {"kernel": "../../etc"},
        {"mem_limit": "1G; rm -rf /"},
        {"mem_limit": "-1"},
        {"cpu_limit": 0},
        {"cpu_limit": 1000},
        {"image": "Evil Image"},
        {"name": "Has Spaces"},
        {"cmd": ["/bin/sh"]},  # not a field: refused, never passed on
        {"environment": {"LD_PRELOAD": "x"}},
    ],
)
def test_a_profile_refuses_what_could_reach_the_spawner_as_something_else(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        Profile.model_validate({"name": "p", "display_name": "P", **fields})


def test_the_bootstrap_file_carries_profiles(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps([tenant([PYTHON, DATA], default="data").model_dump()]))
    [loaded] = load_file(path)
    assert loaded.profile(None) == DATA


def test_the_hub_applies_only_the_profile_fields_that_pass_its_checks() -> None:
    spawner = SimpleNamespace(
        args=[], environment={}, log=SimpleNamespace(info=print, warning=print), _log_name="u"
    )
    spawner.has_trait = lambda name: False
    hook = server_mode.apply_user_options_hook(["--base"], {})
    hook(spawner, {"restricted": False, **DATA.user_options(), "cmd": ["/bin/sh"], "image": "x"})
    assert "--MappingKernelManager.default_kernel_name=nbembed-data" in spawner.args
    assert spawner.environment["NBEMBED_PROFILE"] == "data"
    assert spawner.mem_limit == "2G"
    assert not hasattr(spawner, "image")  # the local spawners have none
    assert not hasattr(spawner, "cmd")
    hook(spawner, {"restricted": False, "kernel": "x --ServerApp.token=", "mem_limit": "lots"})
    assert spawner.args == ["--base", *server_mode.EMBED_ARGS]  # nothing of it passed
    assert spawner.mem_limit is None  # reset: the spawner object is reused
    assert "NBEMBED_PROFILE" not in spawner.environment


def test_profiles_that_differ_only_in_kernel_share_a_server() -> None:
    same = Profile(name="other", display_name="Other", kernel="nbembed-data")
    assert server_options_of(PYTHON.user_options()) == server_options_of(same.user_options())
    assert server_options_of(PYTHON.user_options()) != server_options_of(DATA.user_options())


def test_the_notebook_runs_the_profiles_kernel() -> None:
    assert notebooks.new_notebook(DATA)["metadata"]["kernelspec"]["name"] == "nbembed-data"
    assert notebooks.new_notebook()["metadata"]["kernelspec"]["name"] == "python3"
    stored = notebooks.new_notebook()
    stored["metadata"]["kernelspec"]["display_name"] = "Kept as stored"
    assert notebooks.with_kernel(stored, PYTHON)["metadata"]["kernelspec"]["display_name"] == (
        "Kept as stored"
    )
    assert notebooks.with_kernel(stored, DATA)["metadata"]["kernelspec"]["name"] == "nbembed-data"


def test_the_cli_sends_the_profiles_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps([PYTHON.model_dump(), DATA.model_dump()]))
    args = _parser().parse_args(["tenants", "set-profiles", "demo", str(path), "--default", "data"])
    method, url, body = _request(args)
    assert (method, url) == ("PUT", "/admin/v1/tenants/demo/profiles")
    assert body == {"profiles": json.loads(path.read_text()), "default_profile": "data"}


def test_the_second_kernel_runs_its_own_interpreter(tmp_path: Path) -> None:
    settings = StackSettings(cache_dir=tmp_path)
    python = kernels.venv_dir(settings) / "bin" / "python"
    spec = kernels.kernelspec(python, kernels.DATA_KERNEL)
    assert spec["argv"] == [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert spec["env"] == {"NBEMBED_KERNEL": "nbembed-data"}
