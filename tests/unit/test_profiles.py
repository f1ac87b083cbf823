"""Profiles: a tenant's environments, how a session's name resolves, what reaches the spawner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from infra import kernels
from infra.hub import server_mode
from infra.settings import StackSettings
from nbembed.admin import _parser, _request
from schemas import CloudEvent, Profile, ServerWarmRequested
from schemas.profiles import server_options_of
from services.gateway import app as gateway_app
from services.gateway.api import _profile_name, resolve_profile
from services.gateway.problems import Problem
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import Tenant, load_file
from services.provisioner import handlers as provisioner_handlers
from services.provisioner.handlers import ProvisionerHandlers
from services.provisioner.hub import HubClient, RunningServer, ServerState
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


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The gateway without its lifespan (no Kafka, no store): a demo tenant with profiles."""
    tenants = tmp_path / "tenants.json"
    demo = tenant([PYTHON, DATA]).model_dump()
    demo["api_key_sha256"] = hashlib.sha256(b"unit-key").hexdigest()
    tenants.write_text(json.dumps([demo]))
    settings = GatewaySettings(
        tenants_file=tenants, internal_token="t", ticket_key="k" * 32, hub_login_token="t"
    )
    app = gateway_app.create_app(settings)
    app.state.gateway.tenants.replace(load_file(tenants))
    return TestClient(app, headers={"Authorization": "Bearer unit-key"})


@pytest.mark.parametrize(
    "body",
    [
        {"profile": "gpu"},
        {"profile": "data", "image": "attacker/image"},
        {"profile": {"name": "data"}},
    ],
)
def test_sessions_and_warm_ups_refuse_unknown_or_forged_profiles_before_any_io(
    client: TestClient, body: dict[str, Any]
) -> None:
    session = client.post("/v1/sessions", json={"user_id": "u", "notebook_name": "n", **body})
    warm = client.post("/v1/users/u/warm", json=body)
    for answer in (session, warm):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_warm_up_is_in_the_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/warm"]["post"]
    assert {"202", "401", "422"} <= set(operation["responses"])


class _Hub:
    """A hub whose user's server runs with ``running`` options (or none)."""

    def __init__(self, running: RunningServer | None) -> None:
        self.running = running
        self.calls: list[tuple[str, Any]] = []

    async def ready_server(self, name: str) -> RunningServer | None:
        return self.running

    async def server_state(self, name: str) -> ServerState | None:
        return (
            ServerState(ready=self.running, pending=None, instance="i1") if self.running else None
        )

    async def stop_server(self, name: str) -> None:
        self.calls.append(("stop", None))

    async def wait_stopped(self, name: str, *, timeout: float) -> None:
        return None

    async def ensure_user(self, name: str) -> bool:
        return True

    async def ensure_server(self, name: str, **options: Any) -> RunningServer:
        self.calls.append(("start", options))
        profile = options["profile"]
        return RunningServer(
            path=f"/user/{name}/",
            restricted=options["restricted"],
            instance="i2",
            profile=profile.name if profile else None,
            server_options=server_options_of(profile.user_options()) if profile else (),
        )


class _Sessions:
    def __init__(self, open_sessions: list[str]) -> None:
        self.open = open_sessions

    async def user(self, hub_user: str) -> dict[str, Any]:
        return {"_id": hub_user, "open": self.open}


def _provisioner(hub: _Hub, open_sessions: list[str]) -> ProvisionerHandlers:
    return ProvisionerHandlers(
        cast(HubClient, hub),
        cast(Any, _Sessions(open_sessions)),
        cast(KafkaBroker, None),
        spawn_timeout=10,
        hub_outage_tolerance=10,
    )


async def _open(handlers: ProvisionerHandlers, profile: Profile) -> RunningServer:
    async def unrestricted() -> bool:
        return False

    return await handlers._ready_server("demo-u", unrestricted(), profile, session_id="s2")


RUNNING_PYTHON = RunningServer(path="/user/demo-u/", restricted=False, instance="i1")


async def test_a_profile_with_the_same_server_options_shares_the_running_server() -> None:
    hub = _Hub(RUNNING_PYTHON)
    other_kernel = Profile(name="other", display_name="O", kernel="nbembed-data")
    assert await _open(_provisioner(hub, ["s1", "s2"]), other_kernel) == RUNNING_PYTHON
    assert hub.calls == []


async def test_other_server_options_restart_a_server_no_other_session_uses() -> None:
    hub = _Hub(RUNNING_PYTHON)
    server = await _open(_provisioner(hub, ["s2"]), DATA)
    assert [call for call, _ in hub.calls] == ["stop", "start"]
    assert hub.calls[1][1]["profile"] == DATA and server.profile == "data"


async def test_other_server_options_never_end_another_open_sessions_kernels() -> None:
    hub = _Hub(RUNNING_PYTHON)
    with pytest.raises(provisioner_handlers._CannotOpen) as refused:
        await _open(_provisioner(hub, ["s1", "s2"]), DATA)
    assert refused.value.code == "profile_conflict"
    assert hub.calls == []


def _warm(profile: Profile | None) -> CloudEvent[ServerWarmRequested]:
    warm = ServerWarmRequested(
        tenant_id="demo", hub_user="demo-u", host_user_id="u", restricted=True, profile=profile
    )
    return CloudEvent.wrap(warm, source="/t")


async def test_a_warm_up_starts_a_server_only_when_none_runs() -> None:
    idle = _Hub(None)
    await _provisioner(idle, []).on_server_warm_requested(_warm(DATA))
    [(call, options)] = idle.calls
    assert call == "start" and options["profile"] == DATA and options["restricted"] is True
    running = _Hub(RUNNING_PYTHON)
    await _provisioner(running, []).on_server_warm_requested(_warm(DATA))
    assert running.calls == []  # a hint never restarts a running server


def test_a_retry_compares_with_the_profile_its_session_was_recorded_with() -> None:
    demo = tenant([PYTHON, DATA], default="data")
    assert _profile_name({"profile": PYTHON.model_dump()}, demo) == "python"
    assert _profile_name({"profile": None}, demo) is None
    # Recorded before sessions had profiles: made with what is now the default.
    assert _profile_name({}, demo) == "data"
    assert _profile_name({}, tenant([])) is None
