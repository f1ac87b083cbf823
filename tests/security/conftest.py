"""Every security test attacks the running stack."""

from __future__ import annotations

import pytest

from infra.settings import StackSettings


@pytest.fixture(autouse=True)
def _stack(running_stack: StackSettings) -> StackSettings:
    return running_stack
