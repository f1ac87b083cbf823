"""The fault suite runs against the real stack, which it breaks and repairs.

Each case signals programs of the stack through ``tests/faults/helpers.py``
and restores them in a ``finally``; each is bounded by pytest-timeout.
"""

from __future__ import annotations

import pytest

from infra.settings import StackSettings


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack
