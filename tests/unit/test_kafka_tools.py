"""A Kafka tool that fails at `up` says why, without the passwords it was given (infra/kafka.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import kafka
from infra.settings import StackSettings


def test_a_failing_tool_names_itself_and_what_it_said_without_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            command, 1, stdout="", stderr="bad scram: name=admin,password=s3cret-pw\n"
        )

    monkeypatch.setattr(kafka.subprocess, "run", fails)
    settings = StackSettings(state_dir=tmp_path)
    (tmp_path / "kafka").mkdir(parents=True, exist_ok=True)
    args = ["format", "--add-scram", "SCRAM-SHA-512=[name=admin,password=s3cret-pw]"]
    with pytest.raises(RuntimeError) as failed:
        kafka._run_tool(settings, "kafka.tools.StorageTool", args)
    message = str(failed.value)
    assert "kafka.tools.StorageTool exited with 1" in message
    assert "bad scram" in message and "s3cret-pw" not in message
