"""Notebook names, paths and validation (services/sync/notebooks.py)."""

from __future__ import annotations

import pytest

from services.sync import notebooks


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("Q1 analysis.ipynb", "Q1 analysis"),
        ("a/b\\c", "a-b-c"),
        ("Ünïcode (draft)", "Ünïcode (draft)"),
        (None, "Untitled"),
        ("...", "Untitled"),
        ("\x00\x1f", "Untitled"),
    ],
)
def test_safe_name_never_leaves_the_folder(given: str | None, expected: str) -> None:
    assert notebooks.safe_name(given) == expected


def test_safe_name_is_bounded() -> None:
    assert len(notebooks.safe_name("x" * 1000)) == notebooks.MAX_NAME


def test_free_path_never_takes_an_existing_name() -> None:
    assert notebooks.free_path("work", "a", set()) == "work/a.ipynb"
    assert notebooks.free_path("work", "a", {"a.ipynb", "b.ipynb"}) == "work/a 1.ipynb"
    taken = {"a.ipynb"} | {f"a {i}.ipynb" for i in range(1, 500)}
    assert notebooks.free_path("work", "a", taken) == "work/a 500.ipynb"


def test_new_notebook_is_valid_with_a_python_kernel() -> None:
    nb = notebooks.new_notebook()
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert notebooks.normalise(nb) == nb


def test_normalise_repairs_what_jupyter_would_500_on() -> None:
    nb = {"nbformat": 4, "cells": [{"cell_type": "code", "source": "1+1"}]}
    fixed = notebooks.normalise(nb)
    cell = fixed["cells"][0]
    assert cell["metadata"] == {} and cell["outputs"] == [] and cell["execution_count"] is None
    assert cell["id"] and fixed["nbformat_minor"] >= 5
    assert fixed["metadata"] == {}
    assert "metadata" not in nb["cells"][0]  # the input is not modified


def test_normalise_keeps_outputs_and_metadata() -> None:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"custom": {"k": [1, 2]}},
        "cells": [
            {
                "id": "abc",
                "cell_type": "code",
                "source": "print(1)",
                "metadata": {"tags": ["t"]},
                "execution_count": 3,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}],
            }
        ],
    }
    assert notebooks.normalise(nb) == nb


@pytest.mark.parametrize(
    "bad",
    [
        {"nbformat": 3, "cells": []},
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "weird"}]},
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "nope"},
        [],
    ],
)
def test_normalise_refuses_invalid_notebooks(bad: object) -> None:
    with pytest.raises(notebooks.InvalidNotebook):
        notebooks.normalise(bad)  # type: ignore[arg-type]


def test_normalise_joins_multi_line_strings_as_stored_on_disk() -> None:
    on_disk = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "id": "a",
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "source": ["x = 1\n", "print(x)"],
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}],
            }
        ],
    }
    cell = notebooks.normalise(on_disk)["cells"][0]
    assert cell["source"] == "x = 1\nprint(x)"
    assert cell["outputs"][0]["text"] == "1\n2\n"


def test_normalise_removes_every_trust_marker() -> None:
    """A kernel can write trust into its file; nothing stored or restored keeps it."""
    script = {
        "output_type": "display_data",
        "data": {"application/javascript": "window.__pwned = 1", "text/plain": "x"},
        "metadata": {},
    }
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"signature": "sha256:" + "0" * 64, "language_info": {"name": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": "a1",
                "source": "1",
                "metadata": {"trusted": True, "tags": ["keep"]},
                "outputs": [script],
                "execution_count": 1,
            },
            {"cell_type": "markdown", "id": "b2", "source": "# hi", "metadata": {"trusted": True}},
        ],
    }
    result = notebooks.normalise(notebook)
    assert "signature" not in result["metadata"]
    assert result["metadata"]["language_info"] == {"name": "python"}
    assert [cell["metadata"] for cell in result["cells"]] == [{"tags": ["keep"]}, {}]
    assert result["cells"][0]["outputs"][0]["data"] == script["data"]  # content itself kept
    assert notebook["cells"][0]["metadata"]["trusted"] is True  # the input is not modified
