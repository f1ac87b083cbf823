"""The repository stands alone: nothing in it points to files outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
OUTSIDE = ("../shared", "FACTS.md", "DESIGN.md")


def test_no_tracked_file_cites_notes_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = []
    for name in tracked:
        path = ROOT / name
        if path == Path(__file__) or name.endswith("package-lock.json"):
            continue
        text = path.read_text(errors="ignore") if path.is_file() else ""
        citing += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert citing == [], citing
