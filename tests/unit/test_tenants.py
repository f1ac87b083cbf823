"""Tenant API keys (services/gateway/tenants.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.gateway.tenants import Tenant, TenantRegistry, key_digest


def _tenant(tenant_id: str, key: str) -> Tenant:
    return Tenant(id=tenant_id, api_key_sha256=hashlib.sha256(key.encode()).hexdigest())


def test_each_key_finds_its_own_tenant_only() -> None:
    registry = TenantRegistry([_tenant("demo", "k-demo"), _tenant("acme", "k-acme")])
    demo, acme = registry.authenticate("k-demo"), registry.authenticate("k-acme")
    assert demo is not None and demo.id == "demo"
    assert acme is not None and acme.id == "acme"
    for wrong in ("", "k-dem", "k-demo ", "K-DEMO", hashlib.sha256(b"k-demo").hexdigest()):
        assert registry.authenticate(wrong) is None


def test_tenants_file_is_validated_at_load(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_tenant("demo", "k").model_dump()]))
    assert TenantRegistry.from_file(good).authenticate("k") is not None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "demo", "api_key_sha256": "plaintext-key"}]))
    with pytest.raises(ValidationError):
        TenantRegistry.from_file(bad)


def test_the_key_digest_never_shows_in_repr() -> None:
    assert "api_key_sha256" not in repr(_tenant("demo", "k"))


def test_a_rotated_key_works_until_its_grace_ends_and_not_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tenant = _tenant("demo", "new").model_copy(
        update={
            "previous_key_sha256": key_digest("old"),
            "previous_key_expires_at": now + timedelta(minutes=5),
        }
    )
    registry = TenantRegistry([tenant])
    assert registry.authenticate("new", now) is tenant
    assert registry.authenticate("old", now + timedelta(minutes=4)) is tenant
    assert registry.authenticate("old", now + timedelta(minutes=5)) is None
    assert registry.authenticate("new", now + timedelta(days=1)) is tenant


def test_a_disabled_tenant_has_no_working_key_and_no_origins() -> None:
    tenant = _tenant("demo", "k").model_copy(
        update={"disabled": True, "allowed_origins": ["https://app.example.com"]}
    )
    registry = TenantRegistry([tenant, _tenant("acme", "a")])
    assert registry.authenticate("k") is None
    assert registry.get("demo") is None
    assert registry.allowed_origins() == set()


def test_a_new_snapshot_replaces_the_old_one_whole() -> None:
    registry = TenantRegistry([_tenant("demo", "k")])
    registry.replace([_tenant("acme", "a")])
    assert registry.authenticate("k") is None
    found = registry.authenticate("a")
    assert found is not None and found.id == "acme"
