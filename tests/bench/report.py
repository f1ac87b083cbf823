"""Printing benchmark figures the same way in every benchmark."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_table(results: dict[str, list[float]], high: float) -> None:
    """One line per series: n, p50, the ``high`` percentile and the mean, in seconds."""
    label = f"p{round(high * 100)}"
    width = max(len(name) for name in results) + 2
    print(f"{'':{width}} {'n':>4} {'p50':>8} {label:>8} {'mean':>8}")
    for name, values in results.items():
        print(
            f"{name:{width}} {len(values):4} {percentile(values, 0.5):8.3f} "
            f"{percentile(values, high):8.3f} {statistics.mean(values):8.3f}"
        )


def print_ratio(name: str, ours: list[float], baseline: list[float], high: float) -> None:
    """nbembed over the baseline measured in the same run, at p50 and at ``high``."""
    p50 = percentile(ours, 0.5) / percentile(baseline, 0.5)
    top = percentile(ours, high) / percentile(baseline, high)
    print(f"ratio nbembed/direct, {name}: p50 {p50:.2f}x, p{round(high * 100)} {top:.2f}x")
