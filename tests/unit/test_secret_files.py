"""Secrets come from files (``x_file``) or directly (``x``); a required one missing is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings
from services.sync.settings import SyncSettings


def test_each_secret_is_read_from_its_file_and_a_direct_value_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "provisioner").write_text("from-a-file\n")
    (tmp_path / "internal").write_text("internal-from-a-file")
    (tmp_path / "kafka").write_text("kafka-secret\n")
    monkeypatch.setenv("NBEMBED_SYNC_PROVISIONER_TOKEN_FILE", str(tmp_path / "provisioner"))
    monkeypatch.setenv("NBEMBED_SYNC_INTERNAL_TOKEN_FILE", str(tmp_path / "internal"))
    monkeypatch.setenv("NBEMBED_SYNC_INTERNAL_TOKEN", "set-directly")
    monkeypatch.setenv("NBEMBED_SYNC_KAFKA_PASSWORD_FILE", str(tmp_path / "kafka"))
    settings = SyncSettings()
    assert settings.provisioner_token is not None and settings.internal_token is not None
    assert settings.provisioner_token.get_secret_value() == "from-a-file"  # stripped
    assert settings.internal_token.get_secret_value() == "set-directly"
    assert settings.kafka_password is not None
    assert settings.kafka_password.get_secret_value() == "kafka-secret"


def test_a_missing_required_secret_names_both_ways_to_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBEMBED_SYNC_PROVISIONER_TOKEN", "p")
    for name in ("NBEMBED_SYNC_INTERNAL_TOKEN", "NBEMBED_SYNC_INTERNAL_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="NBEMBED_SYNC_INTERNAL_TOKEN_FILE"):
        SyncSettings()


def test_a_short_ticket_key_from_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("too-short")
    monkeypatch.setenv("NBEMBED_GATEWAY_TICKET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("NBEMBED_GATEWAY_INTERNAL_TOKEN", "i")
    monkeypatch.setenv("NBEMBED_GATEWAY_HUB_LOGIN_TOKEN", "h")
    with pytest.raises(ValidationError, match="32 characters"):
        GatewaySettings()
