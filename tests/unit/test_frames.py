"""The server extension that narrows framers to the user's tenant (nbembed_frames.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "hub" / "singleuser_python"))

import nbembed_frames

from infra.hub.hub_frames import frame_ancestors


def test_the_tenants_origins_become_the_csp_and_the_bridges_list() -> None:
    settings: dict[str, Any] = {"headers": {"Content-Security-Policy": "frame-ancestors 'self' x"}}
    nbembed_frames.apply(settings, ["https://app.example.com", "http://127.0.0.1:8090"])
    assert settings["headers"]["Content-Security-Policy"] == (
        "frame-ancestors 'self' https://app.example.com http://127.0.0.1:8090"
    )
    assert settings["page_config_data"]["nbembedAllowedOrigins"] == (
        "https://app.example.com,http://127.0.0.1:8090"
    )
    nbembed_frames.apply(settings, [])
    assert settings["headers"]["Content-Security-Policy"] == "frame-ancestors 'self'"


def test_an_answer_that_is_not_a_list_of_origins_changes_nothing() -> None:
    good = json.dumps({"origins": ["https://a.example"]}).encode()
    assert nbembed_frames.parse(good) == ["https://a.example"]
    for bad in (
        b"not json",
        b"{}",
        json.dumps({"origins": "https://a.example"}).encode(),
        json.dumps({"origins": ["https://a.example; script-src *"]}).encode(),
        json.dumps({"origins": ["https://a.example 'unsafe-inline'"]}).encode(),
        json.dumps({"origins": [3]}).encode(),
    ):
        assert nbembed_frames.parse(bad) is None


def test_the_hubs_login_answer_names_origins_only() -> None:
    assert frame_ancestors(["https://a.example", "x'; default-src *", "http://b c"]) == (
        "frame-ancestors 'self' https://a.example"
    )
