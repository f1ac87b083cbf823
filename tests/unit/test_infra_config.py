"""Rendering the stack's configuration (infra/)."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
from supervisor.datatypes import dict_of_key_value_pairs

from infra import stack, supervisor
from infra.settings import HubSettings, StackSettings
from infra.supervisor import Program
from services.common import runner


def test_supervisor_config_keeps_environment_values_intact(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path)
    settings.logs_dir.mkdir(parents=True)
    env = {"A": "http://127.0.0.1:8090,http://x:1", "B": "50%", "C": "with space"}
    path = supervisor.write_config(settings, [Program("p", ["echo", "a b", "100%"], env=env)])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    parser = configparser.RawConfigParser()
    parser.read(path)
    raw = parser.get("program:p", "environment")
    # supervisord first expands %(x)s, then splits key/value pairs:
    parsed = dict_of_key_value_pairs(raw.replace("%%", "%"))
    assert parsed == env
    assert parser.get("program:p", "command").replace("%%", "%") == "echo 'a b' 100%"


def test_supervisor_refuses_values_it_cannot_quote(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path)
    with pytest.raises(ValueError, match="double quotes"):
        supervisor.write_config(settings, [Program("p", ["x"], env={"A": 'say "hi"'})])


def test_hub_csp_allows_only_the_configured_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBEMBED_HUB_ALLOWED_ORIGINS", "http://a.example:1, https://b.example")
    hub = HubSettings(state_dir=Path("/x"), service_token_file=Path("/x/t"))
    assert hub.allowed_origins == ["http://a.example:1", "https://b.example"]
    assert hub.frame_ancestors() == "frame-ancestors 'self' http://a.example:1 https://b.example"
    server = json.loads(hub.singleuser_tornado_settings())
    assert server["headers"]["Content-Security-Policy"] == hub.frame_ancestors()
    origins = server["page_config_data"]["nbembedAllowedOrigins"]
    assert origins == "http://a.example:1,https://b.example"


def test_per_user_origins_put_hub_users_and_host_page_on_one_localhost_site() -> None:
    settings = StackSettings(per_user_origins=True)
    assert settings.subdomain_host == "http://jupyter.nbembed.localhost:8000"
    assert settings.browser_hub_url == settings.subdomain_host
    assert settings.allowed_origins == ["http://app.nbembed.localhost:8090"]
    assert settings.public_hub_url == "http://127.0.0.1:8000"  # programs keep loopback
    default = StackSettings()
    assert default.subdomain_host is None
    assert default.browser_hub_url == default.public_hub_url


def test_per_user_origins_refuse_a_domain_browsers_would_not_trust_over_http() -> None:
    with pytest.raises(ValueError, match="localhost"):
        StackSettings(per_user_origins=True, origins_domain="nbembed.test")


def test_each_replica_shares_its_services_port_and_has_one_of_its_own(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path, replicas=2)
    programs = {p.name: p for p in stack.replica_programs(settings, tmp_path / "tenants.json")}
    assert set(programs) == {
        "gateway",
        "gateway-2",
        "provisioner",
        "provisioner-2",
        "sync",
        "sync-2",
    }
    own_ports = set()
    for name, program in programs.items():
        prefix = f"NBEMBED_{name.split('-')[0].upper()}_"
        assert program.env[prefix + "REUSE_PORT"] == "True"
        own_ports.add(int(program.env[prefix + "REPLICA_PORT"]))
    assert len(own_ports) == 6
    assert programs["gateway"].env["NBEMBED_GATEWAY_PORT"] == "8080"
    assert programs["gateway-2"].env["NBEMBED_GATEWAY_PORT"] == "8080"
    # Every replica is checked on its own port, and the stack's ports list them all.
    checks = stack._service_checks(settings)
    assert set(programs) < set(checks)
    assert own_ports < set(stack.stack_ports(settings))


def test_one_replica_keeps_the_services_names_and_an_exclusive_port(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path)
    assert settings.replicas == 1
    programs = stack.replica_programs(settings, tmp_path / "tenants.json")
    assert [p.name for p in programs] == ["gateway", "provisioner", "sync"]
    assert programs[0].env["NBEMBED_GATEWAY_REUSE_PORT"] == "False"


def test_more_replicas_than_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="partitions"):
        StackSettings(replicas=4, kafka_partitions=3)


def test_replicas_of_a_service_share_a_port_only_with_reuse_port() -> None:
    first = runner.listening_socket("127.0.0.1", 0, reuse_port=True)
    try:
        first.listen()  # as uvicorn does once the replica has started
        port = first.getsockname()[1]
        second = runner.listening_socket("127.0.0.1", port, reuse_port=True)
        second.close()
        with pytest.raises(OSError):
            runner.listening_socket("127.0.0.1", port, reuse_port=False)
    finally:
        first.close()


def test_commands_follow_the_running_stacks_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = StackSettings(state_dir=tmp_path, replicas=3)
    settings.logs_dir.mkdir(parents=True)
    supervisor.write_config(settings, stack.replica_programs(settings, tmp_path / "t.json"))
    monkeypatch.setattr(supervisor, "pid", lambda _settings: 1)
    assert stack.running_replicas(settings) == 3
    assert stack.adopt_running_replicas(StackSettings(state_dir=tmp_path)).replicas == 3
    told = StackSettings(state_dir=tmp_path, replicas=1)
    assert stack.adopt_running_replicas(told).replicas == 1  # what the caller said wins
