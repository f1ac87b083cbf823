"""A Jupyter save is named by its file's timestamp, however the timestamp is written."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import BaseModel, ValidationError

from services.gateway.internal_api import ServerSave
from services.gateway.saves_api import SaveRequest, jupyter_save_id

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


@pytest.mark.parametrize("model", [SaveRequest, ServerSave])
def test_a_timestamp_is_an_iso_string_never_a_number(model: type[BaseModel]) -> None:
    """A number would be read as seconds since 1970: a made-up save of another time."""
    fields = {"path": "work/a.ipynb"} if model is ServerSave else {}
    for number in (0, 1764201784, 1.5, "0", " 1764201784 ", "1.5", "-2", "1e9"):
        with pytest.raises(ValidationError, match="ISO 8601"):
            model.model_validate({**fields, "last_modified": number})
    parsed = model.model_validate({**fields, "last_modified": "2026-11-27T02:03:04.123456Z"})
    assert parsed.last_modified == stamp("2026-11-27T02:03:04.123456Z")  # type: ignore[attr-defined]
