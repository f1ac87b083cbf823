"""How a revision's notebook is stored: encoded, so any key a notebook carries survives."""

from __future__ import annotations

import json
from typing import Any

from services.sync.store import decode_content, encode_content

WIDGETS = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"


def notebook_with_dotted_keys() -> dict[str, Any]:
    output = {
        "output_type": "display_data",
        "metadata": {},
        "data": {PLOTLY: {"data": [{"x": [1, 2]}]}, "text/plain": "Figure"},
    }
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "widgets": {WIDGETS: {"state": {}, "version_major": 2}},
            "$set": {"a.b": "a user's own metadata may say anything"},
        },
        "cells": [
            {
                "id": "c",
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "source": "fig ✓",
                "outputs": [output],
            }
        ],
    }


def test_a_notebook_with_dotted_and_dollar_keys_comes_back_equal() -> None:
    notebook = notebook_with_dotted_keys()
    stored = {"content_z": encode_content(notebook)}
    assert decode_content(stored) == notebook


def test_the_stored_form_is_bytes_without_any_document_key() -> None:
    encoded = encode_content(notebook_with_dotted_keys())
    assert isinstance(encoded, bytes)
    # Repetitive outputs (the common case) shrink a lot.
    big = {"cells": [{"outputs": [{"text": "same line\n" * 2000}]}]}
    assert len(encode_content(big)) < len(json.dumps(big)) / 20


def test_a_revision_stored_before_encoding_is_still_read() -> None:
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    assert decode_content({"content": notebook}) == notebook
