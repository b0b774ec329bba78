"""The one percentile of latencies: nearest rank, as the engines, simulator and benchmarks use."""

from __future__ import annotations

from serve.engine.percentile import percentile


def test_nearest_rank_without_interpolation() -> None:
    ttfts = [0.1 * i for i in range(1, 11)]  # 0.1 .. 1.0
    assert percentile(ttfts, 0.9) == ttfts[9]  # rank floor(0.9 * 10) = 9: the slowest
    assert percentile(ttfts, 0.5) == ttfts[5]
    assert percentile(ttfts, 0.0) == ttfts[0]
    assert percentile(ttfts, 0.99) == percentile(ttfts, 1.0) == ttfts[-1]


def test_no_samples_no_percentile() -> None:
    assert percentile([], 0.9) is None
