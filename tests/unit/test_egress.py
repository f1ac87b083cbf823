"""The egress filter's rules (infra/egress.py) and the kernels' runtime folders."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import egress
from infra.hub.local_users import ensure_runtime_dir
from infra.settings import REPO_ROOT, StackSettings

NFT = shutil.which("nft", path=egress.ADMIN_PATH)


def _rules(script: str) -> list[str]:
    """The rule lines of the user servers' chain, in order."""
    body = script.split(f"chain {egress.USER_CHAIN} {{", 1)[1].split("\n    }", 1)[0]
    return [line.strip() for line in body.strip().splitlines()]


def test_user_sockets_may_open_only_the_hub_api_and_the_gateway() -> None:
    settings = StackSettings(hub_api_port=18081, gateway_port=18080)
    script = egress.ruleset(4242, egress.Doors.of(settings))

    # Only sockets of the users' group are sent to the chain; every other program is untouched.
    assert "meta skgid 4242 jump user_servers" in script
    assert "policy accept;" in script
    rules = _rules(script)
    accepts = [rule for rule in rules if rule.endswith("accept")]
    assert accepts == [
        'oifname "lo" ct direction reply accept',
        'oifname "lo" ip daddr 127.0.0.1 tcp dport { 18080, 18081 } accept',
    ]
    # Whatever else they send is refused at once, whichever protocol or address family.
    assert rules[-2:] == [
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
    ]
    assert "inet" in script.splitlines()[0]


def test_the_table_is_replaced_whole_in_one_transaction() -> None:
    # Declaring then deleting the table makes the script work whether or not a
    # crashed stack left the table behind: `up` is idempotent.
    lines = egress.ruleset(1, egress.Doors(8081, 8080)).splitlines()
    assert lines[:3] == ["table inet nbembed", "delete table inet nbembed", "table inet nbembed {"]


def test_nft_accepts_the_rules_without_applying_them() -> None:
    egress.check(os.getegid(), egress.Doors.of(StackSettings()))


NOBODYS_GID = 2**32 - 3
"""A group no socket has: a table made for it filters nothing on this shared machine."""


def test_a_table_left_behind_is_replaced_and_down_removes_it() -> None:
    table = f"nbembed_unit_{os.getpid()}"
    doors = egress.Doors(8081, 8080)
    try:
        egress.load(NOBODYS_GID, doors, table)
        # What a crashed stack leaves behind does not stop the next `up`.
        egress.load(NOBODYS_GID, egress.Doors(9081, 9080), table)
        assert egress.active(table)
        listed = subprocess.run(
            [str(NFT), "list", "table", "inet", table], capture_output=True, text=True, check=True
        ).stdout
        assert "9080, 9081" in listed and "8081" not in listed  # replaced, not appended
        assert listed.count("jump user_servers") == 1
    finally:
        assert egress.remove(table)
    assert not egress.active(table)
    assert not egress.remove(table)  # `down` twice, or after a stack that never filtered


def test_up_removes_the_filters_of_stacks_gone_and_refuses_beside_a_running_one(
    tmp_path: Path,
) -> None:
    # Every stack's table filters the same users' group, and a reject in any table is
    # final: one left by a deleted clone on other ports would refuse this stack's doors.
    prefix = f"nbembed_unit_{os.getpid()}_"
    settings = StackSettings(state_dir=tmp_path / "this")
    gone, unowned, running = (f"{prefix}{name}" for name in ("gone", "unowned", "running"))
    try:
        egress.load(NOBODYS_GID, egress.Doors(9081, 9080), gone, tmp_path / "deleted-clone")
        egress.load(NOBODYS_GID, egress.Doors(9081, 9080), unowned)  # as older nbembed made
        assert egress.owner_of(gone) == tmp_path / "deleted-clone"
        assert egress.owner_of(unowned) is None
        assert sorted(egress.clear_others(settings, prefix)) == sorted([gone, unowned])
        assert egress.tables(prefix) == []

        # A stack whose supervisord runs keeps its filter, and this one does not start.
        state = tmp_path / "running-clone"
        state.mkdir()
        supervisord = subprocess.Popen(["bash", "-c", "exec -a supervisord sleep 60"])
        try:
            (state / "supervisord.pid").write_text(str(supervisord.pid))
            egress.load(NOBODYS_GID, egress.Doors(9081, 9080), running, state)
            with pytest.raises(egress.EgressError, match="another nbembed stack"):
                egress.clear_others(settings, prefix)
            assert egress.active(running)
        finally:
            supervisord.kill()
            supervisord.wait()
        assert egress.clear_others(settings, prefix) == [running]  # its stack has stopped
    finally:
        for table in (gone, unowned, running):
            egress.remove(table)


@pytest.mark.parametrize(
    ("overrides", "wanted"),
    [
        ({}, True),
        ({"egress_filter": False}, False),
        ({"spawner_class": "simple"}, False),
        ({"spawner_class": "kubespawner.KubeSpawner"}, False),
        ({"hub_url": "http://hub.example:8000"}, False),
    ],
)
def test_the_filter_applies_to_the_stacks_own_user_accounts_only(
    overrides: dict[str, object], wanted: bool
) -> None:
    assert egress.wanted(StackSettings(**overrides)) is wanted  # type: ignore[arg-type]


def test_a_runtime_folder_belongs_to_its_account_alone(tmp_path: Path) -> None:
    root = tmp_path / "runtime"
    account = root / "nb-someone-0123456789abcdef"
    root.mkdir()
    root.chmod(0o777)
    # A link planted before the spawner made the folder is replaced, not followed.
    target = tmp_path / "elsewhere"
    target.mkdir()
    account.symlink_to(target)

    ensure_runtime_dir(account, os.getuid(), os.getgid())

    assert not account.is_symlink() and account.is_dir()
    assert stat.S_IMODE(account.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert account.stat().st_uid == os.getuid()
    # Kernel IPC sockets live there: their paths must fit a Unix socket's 107 bytes.
    socket_path = (
        StackSettings().kernel_runtime_root
        / "nb-0123456789-0123456789abcdef"
        / "kernel-00000000-0000-0000-0000-000000000000-ipc-5"
    )
    assert len(str(socket_path).encode()) <= 107


def _user_pod_policies() -> list[dict[str, Any]]:
    manifest = REPO_ROOT / "deploy" / "networkpolicy-user-egress.yaml"
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    assert {doc["kind"] for doc in documents} == {"NetworkPolicy"}
    return documents


def test_production_user_pods_may_reach_only_the_hub_api_the_gateway_and_dns() -> None:
    policies = _user_pod_policies()
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"] == {"matchLabels": {"component": "singleuser-server"}}
        assert spec["policyTypes"] == ["Egress"]
    # Default deny: a policy that selects user pods for egress and allows nothing.
    assert any(policy["spec"]["egress"] == [] for policy in policies)
    allowed = {
        (json.dumps(peer, sort_keys=True), port["protocol"], port["port"])
        for policy in policies
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    hub = json.dumps({"podSelector": {"matchLabels": {"component": "hub"}}}, sort_keys=True)
    gateway = json.dumps(
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "nbembed",
                    "app.kubernetes.io/component": "gateway",
                }
            }
        },
        sort_keys=True,
    )
    dns = json.dumps(
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        },
        sort_keys=True,
    )
    settings = StackSettings()
    assert allowed == {
        (hub, "TCP", settings.hub_api_port),
        (gateway, "TCP", settings.gateway_port),
        (dns, "UDP", 53),
        (dns, "TCP", 53),
    }
