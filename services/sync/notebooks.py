"""Notebook content rules: names, paths and validation (pure functions)."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
import uuid
from typing import Any

import nbformat
from nbformat.v4.rwbase import rejoin_lines

from schemas.profiles import Profile

_UNSAFE = re.compile(r"[^\w .()-]+", re.UNICODE)
MAX_NAME = 100


class InvalidNotebook(ValueError):
    """The content is not a valid nbformat 4 notebook; the message says why."""


def safe_name(name: str | None) -> str:
    """A file name from a user-given notebook name: no folders, no traversal, no control chars."""
    text = unicodedata.normalize("NFC", name or "")
    if text.lower().endswith(".ipynb"):
        text = text[: -len(".ipynb")]
    text = _UNSAFE.sub("-", text).strip(" .-")
    return text[:MAX_NAME].rstrip(" .-") or "Untitled"


def free_path(folder: str, name: str, taken: set[str]) -> str:
    """``folder/name.ipynb``, or ``folder/name 1.ipynb``, … : the first file name not taken."""
    candidate, i = f"{name}.ipynb", 0
    while candidate in taken:
        i += 1
        candidate = f"{name} {i}.ipynb"
    return f"{folder}/{candidate}"


def new_notebook(profile: Profile | None = None) -> dict[str, Any]:
    """An empty notebook with the profile's kernel, Python 3 by default (opening it starts
    that kernel)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return with_kernel(normalise(nb), profile)


def with_kernel(notebook: dict[str, Any], profile: Profile | None) -> dict[str, Any]:
    """``notebook`` set to run the profile's kernel (unchanged without a profile).

    JupyterLab and Notebook 7 start the kernel the notebook's metadata names,
    so this is how a session's profile chooses its kernel: a stored notebook
    opened in a session of another profile runs that session's kernel. One
    that already names the profile's kernel is left as stored, byte for byte.
    """
    if profile is None:
        return notebook
    metadata = notebook.setdefault("metadata", {})
    current = metadata.get("kernelspec")
    if isinstance(current, dict) and current.get("name") == profile.kernel:
        return notebook
    metadata["kernelspec"] = {
        "name": profile.kernel,
        "display_name": profile.display_name,
        "language": "python",
    }
    return notebook


def normalise(notebook: dict[str, Any]) -> dict[str, Any]:
    """Validate a notebook and return it as the current nbformat 4 minor, cell ids included.

    Repairs what Jupyter itself tolerates on load but the contents API turns into
    500s or warnings (measured on Jupyter Server 2): a missing ``nbformat_minor``, cells without
    ``metadata``, code cells without ``outputs``. Anything else invalid raises
    `InvalidNotebook` with the reason. Trust is always removed (see `_strip_trust`).
    """
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise InvalidNotebook("only nbformat 4 notebooks are accepted")
    data = copy.deepcopy(notebook)
    data.setdefault("metadata", {})
    minor = data.setdefault("nbformat_minor", 4)
    cells = data.get("cells")
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise InvalidNotebook("'cells' must be a list of cell objects")
    if not isinstance(minor, int) or not isinstance(data["metadata"], dict):
        raise InvalidNotebook("'nbformat_minor' must be an integer and 'metadata' an object")
    _strip_trust(data)
    for cell in cells:
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    # On disk multi-line strings are lists of lines; store them joined, as
    # Jupyter's own reader does, so stored content compares as users see it.
    node = rejoin_lines(nbformat.from_dict(data))
    if minor < nbformat.v4.nbformat_minor:
        node = nbformat.v4.upgrade(node, from_version=4, from_minor=minor)
        node.metadata.pop("orig_nbformat_minor", None)  # nbformat's note, not the user's
    for cell in node.cells:
        cell.setdefault("id", uuid.uuid4().hex[:8])
    try:
        nbformat.validate(node)
    except nbformat.ValidationError as exc:
        raise InvalidNotebook(exc.message) from exc
    plain: dict[str, Any] = _to_plain(node)
    return plain


def _strip_trust(data: dict[str, Any]) -> None:
    """Remove every trust marker: the notebook's signature and each cell's ``trusted``.

    A notebook comes from a user's kernel, which can write anything into the
    file. A server signs a notebook it is given when every cell says
    ``trusted`` (Jupyter's ``check_and_sign``), and a signed notebook runs the
    scripts in its outputs in the page of whoever opens it. So nothing stored
    or restored carries trust: outputs render as untrusted (sanitised HTML, no
    JavaScript) for everyone, including the author.
    """
    data["metadata"].pop("signature", None)
    for cell in data["cells"]:
        metadata = cell.setdefault("metadata", {})
        if isinstance(metadata, dict):  # anything else fails validation below
            metadata.pop("trusted", None)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


MAX_DEPTH = 100
"""Deepest nesting of objects and lists accepted in a saved notebook (real ones stay
far below; Python's own parser and validator fail with RecursionError near 1000)."""


def parse(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A saved file's bytes as a normalised notebook; `InvalidNotebook` says why not.

    Bounded whatever the file holds: nesting deeper than ``max_depth`` is
    refused before validation, and a RecursionError anywhere becomes a reason.
    """
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise InvalidNotebook(f"nested deeper than {max_depth} levels") from exc
    except ValueError as exc:
        raise InvalidNotebook(f"not JSON: {exc}") from exc
    if nesting_exceeds(data, max_depth):
        raise InvalidNotebook(f"nested deeper than {max_depth} levels")
    try:
        return normalise(data)
    except RecursionError as exc:
        raise InvalidNotebook("nested too deeply to validate") from exc


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and lists in ``value`` nest deeper than ``limit`` (no recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
