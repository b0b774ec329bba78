"""SGLang's per-DP-rank load snapshots mapped onto `EngineStats`.

The snapshots are what SGLang serves at `/v1/loads` and reads from shared memory in
`TokenizerManager.get_loads()` (cheap, no scheduler round trip): one per data-parallel rank, so
with attention DP every GPU reports its own requests and KV pool and the sums are the
instance's. The same quantities appear as Prometheus series; `PROMETHEUS_EQUIVALENTS` names them
for dashboards that watch SGLang directly.

What SGLang does not report per instance, r1serve counts itself from the requests it streamed:
cumulative prompt and cached-prompt tokens, and decode tokens still expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from serve.engine.base import EngineStats

# EngineStats field -> the SGLang 0.5.23 metric that carries the same quantity (per DP rank).
PROMETHEUS_EQUIVALENTS: Mapping[str, str] = MappingProxyType({
    "running": "sglang:num_running_reqs",
    "waiting": "sglang:num_queue_reqs",
    "kv_pages_used": "sglang:num_used_tokens",
    "kv_pages_total": "sglang:max_total_num_tokens",
    "prefix_cache_hit_tokens": "sglang:cached_tokens_total",
    "prompt_tokens": "sglang:prompt_tokens_total",
    "generation_tokens_per_s": "sglang:gen_throughput",
})


@dataclass(frozen=True)
class RequestTotals:
    """What r1serve counted from the streams it served."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    expected_remaining_decode_tokens: int = 0
    ttft_p90_s: float | None = None  # over the recent window (see `recent_p90`)


TTFT_WINDOW_S = 60.0  # the TTFT percentile the autoscaler sees covers this recent past


def recent_p90(samples: Iterable[tuple[float, float]], now: float) -> float | None:
    """90th percentile of the (time, value) samples no older than `TTFT_WINDOW_S`."""
    ordered = sorted(v for at, v in samples if now - at <= TTFT_WINDOW_S)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def engine_stats(loads: Iterable[Mapping[str, Any] | Any], page_size: int,
                 totals: RequestTotals) -> EngineStats:
    """Sum the latest snapshot of each DP rank. `loads` holds `LoadSnapshot`s or their dicts."""
    latest: dict[int, Mapping[str, Any]] = {}
    for load in loads:
        d = load if isinstance(load, Mapping) else load.to_dict({"core"})
        rank = int(d.get("dp_rank", 0))
        if rank not in latest or d.get("timestamp", 0) >= latest[rank].get("timestamp", 0):
            latest[rank] = d
    ranks = list(latest.values())

    def total(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in ranks)

    used_tokens = int(total("num_used_tokens"))
    pool_tokens = int(total("max_total_num_tokens") or total("num_total_tokens"))
    return EngineStats(
        running=int(total("num_running_reqs")),
        waiting=int(total("num_waiting_reqs")),
        kv_pages_used=math.ceil(used_tokens / page_size),
        kv_pages_total=pool_tokens // page_size,
        page_size=page_size,
        queued_prefill_tokens=int(total("num_waiting_uncached_tokens")),
        expected_remaining_decode_tokens=totals.expected_remaining_decode_tokens,
        prefix_cache_hit_tokens=totals.cached_tokens,
        prompt_tokens=totals.prompt_tokens,
        generation_tokens_per_s=total("gen_throughput"),
        ttft_p90_s=totals.ttft_p90_s,
    )
