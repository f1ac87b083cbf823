"""Lift the egress filter for tests of the layer behind it.

With the filter on (infra/egress.py), a kernel cannot even connect to Kafka or
the store. Kafka's and the store's own authentication are still defences of
their own (a filter left off, a production cluster whose NetworkPolicy is
missing): their kernel attacks run with the filter lifted, so that each layer
is proven on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from infra import egress
from infra.settings import StackSettings


@contextlib.contextmanager
def egress_filter_lifted(settings: StackSettings) -> Iterator[None]:
    """Remove nbembed's nftables table for the block, and put it back after it."""
    was_active = egress.active(egress.table_of(settings))
    egress.remove(egress.table_of(settings))
    try:
        yield
    finally:
        if was_active:
            egress.apply(settings)
