"""SGLang per-DP-rank loads merged into the engine's EngineStats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from serve.engine.load_meter import LoadMeter
from serve.engine.sglang.stats import (
    PROMETHEUS_EQUIVALENTS,
    RAY_METRIC_PREFIX,
    SGLANG_METRICS,
    PrefillCounters,
    latest_loads,
    merge_loads,
    ray_exported_name,
)

METRICS = Path(__file__).parents[4] / ".." / "shared" / "data" / "sglang-0.5.23" / \
    "prometheus_metrics.txt"


def _load(rank: int, t: float = 1.0, **kw) -> dict:
    return {"dp_rank": rank, "timestamp": t, "num_running_reqs": 0, "num_waiting_reqs": 0,
            "num_waiting_uncached_tokens": 0, "num_used_tokens": 0,
            "max_total_num_tokens": 0, "gen_throughput": 0.0, **kw}


def _meter_stats(page_size: int = 16):
    meter = LoadMeter(now=0.0)
    meter.prefix_matched(5000, 4096)
    return meter.snapshot(1.0, [], kv_pages_used=0, kv_pages_total=0, page_size=page_size,
                          max_running=0)


def test_sums_dp_ranks_over_the_meters_report_and_keeps_latest_snapshot() -> None:
    loads = [
        _load(0, 1.0, num_running_reqs=99),  # stale snapshot of rank 0
        _load(0, 2.0, num_running_reqs=3, num_waiting_reqs=1, num_used_tokens=1000,
              max_total_num_tokens=64_000, num_waiting_uncached_tokens=500,
              max_running_requests=48),
        _load(1, 2.0, num_running_reqs=2, num_used_tokens=17, max_total_num_tokens=64_000,
              max_running_requests=48),
    ]
    own = _meter_stats()
    s = merge_loads(own, latest_loads(loads))
    assert s == dataclasses.replace(own, running=5, waiting=1, kv_pages_used=64,
                                    kv_pages_total=8000, queued_prefill_tokens=500,
                                    max_running=96)
    assert s.kv_pages_total * s.page_size == 128_000  # 2 ranks x 64k; used is ceil(1017 / 16)
    assert (s.prompt_tokens, s.prefix_cache_hit_tokens) == (5000, 4096)  # the meter's


def test_no_loads_yet_leaves_the_meters_report() -> None:
    own = _meter_stats(page_size=64)
    assert merge_loads(own, latest_loads([])) == own


def test_sglangs_own_load_snapshots_are_read() -> None:
    snapshot = pytest.importorskip(
        "sglang.srt.managers.load_snapshot",
        reason="install SGLang's parser: bash scripts/install_test_sglang.sh")
    loads = [snapshot.LoadSnapshot(timestamp=3.0, dp_rank=0, num_running_reqs=4,
                                   num_waiting_reqs=2, num_waiting_uncached_tokens=700,
                                   num_used_tokens=320, max_total_num_tokens=6400,
                                   max_running_requests=32, total_prefill_uncached_tokens=900,
                                   total_prefill_busy_us=250_000)]
    ranks = latest_loads(loads)
    s = merge_loads(_meter_stats(), ranks)
    assert (s.running, s.waiting, s.queued_prefill_tokens) == (4, 2, 700)
    assert (s.kv_pages_used, s.kv_pages_total, s.max_running) == (20, 400, 32)
    counters = PrefillCounters()
    assert counters.since_last(ranks) == (0, 0.0)  # a baseline
    later = latest_loads([snapshot.LoadSnapshot(
        timestamp=4.0, total_prefill_uncached_tokens=2900, total_prefill_busy_us=750_000)])
    assert counters.since_last(later) == (2000, 0.5)


def test_prefill_counters_give_the_work_since_the_last_read() -> None:
    counters = PrefillCounters()
    assert counters.since_last([_load(0, total_prefill_uncached_tokens=100,
                                      total_prefill_busy_us=10_000)]) == (0, 0.0)
    # Both ranks prefilled side by side: their tokens add up, the time is the longer one's.
    tokens, busy_s = counters.since_last([
        _load(0, total_prefill_uncached_tokens=4100, total_prefill_busy_us=510_000),
        _load(1, total_prefill_uncached_tokens=3000, total_prefill_busy_us=400_000)])
    assert (tokens, busy_s) == (4000, 0.5)  # rank 1 only set its baseline
    tokens, busy_s = counters.since_last([
        _load(0, total_prefill_uncached_tokens=10, total_prefill_busy_us=1_000),  # restarted
        _load(1, total_prefill_uncached_tokens=6000, total_prefill_busy_us=700_000)])
    assert (tokens, busy_s) == (3000, 0.3)


def test_prometheus_names_exist_in_the_pinned_release() -> None:
    if not METRICS.exists():
        pytest.skip("shared/data/sglang-0.5.23 is not beside this checkout")
    names = set(METRICS.read_text().split())
    assert set(SGLANG_METRICS.values()) <= names
    assert PROMETHEUS_EQUIVALENTS["running"] == "ray_sglang_num_running_reqs"
    assert all(":" not in name for name in PROMETHEUS_EQUIVALENTS.values())


def test_exported_names_follow_rays_namespace() -> None:
    """Ray serves every application metric under its namespace (`ray_` + name)."""
    from ray._private.telemetry.open_telemetry_metric_recorder import NAMESPACE

    assert RAY_METRIC_PREFIX == NAMESPACE + "_"


def test_exported_names_follow_sglangs_ray_wrappers() -> None:
    """SGLang's own sanitizer (importable only with SGLang's full dependencies)."""
    wrappers = pytest.importorskip("sglang.srt.observability.ray_wrappers",
                                   reason="needs SGLang with its full dependencies",
                                   exc_type=ImportError)
    sanitize = wrappers.RayPrometheusMetric._get_sanitized_opentelemetry_name
    for name in (*SGLANG_METRICS.values(), "sglang:e2e_request_latency_seconds"):
        assert ray_exported_name(name) == RAY_METRIC_PREFIX + sanitize(name)
