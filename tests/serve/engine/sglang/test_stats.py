"""SGLang per-DP-rank loads mapped to EngineStats."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.engine.base import EngineStats
from serve.engine.sglang.stats import (
    PROMETHEUS_EQUIVALENTS,
    RequestTotals,
    engine_stats,
    recent_p90,
)

METRICS = Path(__file__).parents[4] / ".." / "shared" / "data" / "sglang-0.5.23" / \
    "prometheus_metrics.txt"


def _load(rank: int, t: float = 1.0, **kw) -> dict:
    return {"dp_rank": rank, "timestamp": t, "num_running_reqs": 0, "num_waiting_reqs": 0,
            "num_waiting_uncached_tokens": 0, "num_used_tokens": 0,
            "max_total_num_tokens": 0, "gen_throughput": 0.0, **kw}


def test_sums_dp_ranks_and_keeps_latest_snapshot() -> None:
    loads = [
        _load(0, 1.0, num_running_reqs=99),  # stale snapshot of rank 0
        _load(0, 2.0, num_running_reqs=3, num_waiting_reqs=1, num_used_tokens=1000,
              max_total_num_tokens=64_000, num_waiting_uncached_tokens=500, gen_throughput=80.0),
        _load(1, 2.0, num_running_reqs=2, num_used_tokens=17, max_total_num_tokens=64_000,
              gen_throughput=40.0),
    ]
    s = engine_stats(loads, page_size=16, totals=RequestTotals(prompt_tokens=5000,
                                                             cached_tokens=4096,
                                                             expected_remaining_decode_tokens=77))
    assert s == EngineStats(running=5, waiting=1, kv_pages_used=64, kv_pages_total=8000,
                            page_size=16, queued_prefill_tokens=500,
                            expected_remaining_decode_tokens=77, prefix_cache_hit_tokens=4096,
                            prompt_tokens=5000, generation_tokens_per_s=120.0)
    assert s.kv_pages_total * s.page_size == 128_000  # 2 ranks x 64k; used is ceil(1017 / 16) pages


def test_no_loads_yet() -> None:
    s = engine_stats([], page_size=64, totals=RequestTotals())
    assert (s.running, s.kv_pages_total, s.page_size) == (0, 0, 64)


def test_prometheus_names_exist_in_the_pinned_release() -> None:
    if not METRICS.exists():
        pytest.skip("shared/data/sglang-0.5.23 is not beside this checkout")
    names = set(METRICS.read_text().split())
    assert set(PROMETHEUS_EQUIVALENTS.values()) <= names


def test_ttft_p90_covers_the_recent_window_only() -> None:
    samples = [(0.0, 99.0)] + [(100.0 + i, float(i)) for i in range(10)]
    assert recent_p90(samples, now=110.0) == 9.0  # the 99 s sample at t=0 is out of window
    assert recent_p90([(0.0, 1.0)], now=1000.0) is None
