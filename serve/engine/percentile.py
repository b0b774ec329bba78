"""`percentile`: how r1serve takes a percentile of latencies, in one place: nearest rank, no
interpolation. The engines' TTFT p90 and p99 (every backend's `LoadMeter`), the fleet
simulator's and the benchmarks' figures all come from it, so they can be set side by side."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The sample at rank floor(q * n) of `ordered` (ascending), the largest for q near 1;
    None when there are no samples."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None
