"""A Jupyter save is named by its file's timestamp, however the timestamp is written."""

from __future__ import annotations

from datetime import datetime

from services.gateway.saves_api import jupyter_save_id

USER = "demo-abcdefghijklmnopqrstuvwxyz"


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_server_and_the_browser_name_the_same_save() -> None:
    # The hook sends Python's isoformat, the browser gets Jupyter's "Z" form.
    hook = jupyter_save_id(USER, "work/a.ipynb", stamp("2026-11-27T02:03:04.123456+00:00"))
    browser = jupyter_save_id(USER, "work/a.ipynb", stamp("2026-11-27T02:03:04.123456Z"))
    elsewhere = jupyter_save_id(USER, "work/a.ipynb", stamp("2026-11-27T03:03:04.123456+01:00"))
    assert hook == browser == elsewhere


def test_another_time_file_or_user_is_another_save() -> None:
    base = jupyter_save_id(USER, "work/a.ipynb", stamp("2026-11-27T02:03:04.123456Z"))
    assert base != jupyter_save_id(USER, "work/a.ipynb", stamp("2026-11-27T02:03:04.123457Z"))
    assert base != jupyter_save_id(USER, "work/b.ipynb", stamp("2026-11-27T02:03:04.123456Z"))
    assert base != jupyter_save_id(USER + "x", "work/a.ipynb", stamp("2026-11-27T02:03:04.123456Z"))
