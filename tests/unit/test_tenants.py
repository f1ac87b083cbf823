"""Tenant API keys (services/gateway/tenants.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.gateway.tenants import Tenant, TenantRegistry


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
