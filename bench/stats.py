"""Summary figures the benchmarks print."""
from __future__ import annotations


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank value at `share` (0.5 = median, 0.95 = p95) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]
