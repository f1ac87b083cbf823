"""kafka-storage formatting a log dir: the real tool from the jars install.sh fetched, no stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import kafka, stack
from infra.settings import StackSettings

DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(range(1, 16)))
"""A UUID whose URL-safe base64 starts with "-" (one random UUID in 64 does)."""


def test_a_uuid_whose_base64_starts_with_a_dash_never_becomes_the_cluster_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka-storage reads "-t -xyz" as a missing id: `up` failed one time in 64 before."""
    settings = StackSettings(state_dir=tmp_path)
    stack.ensure_kafka_passwords(settings)
    properties = kafka.write_config(settings)
    draws: Iterator[uuid.UUID] = iter([DASH_FIRST, uuid.UUID(int=DASH_FIRST.int ^ (1 << 127))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))

    assert kafka.prepare_storage(settings, properties) is True

    meta = (kafka.kafka_dir(settings) / "data" / "meta.properties").read_text()
    (cluster_id,) = [
        line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster.id=")
    ]
    assert not cluster_id.startswith("-")
    assert uuid.UUID(bytes=kafka.base64.urlsafe_b64decode(cluster_id + "==")) != DASH_FIRST
