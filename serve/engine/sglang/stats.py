"""SGLang's per-DP-rank load snapshots merged into the engine's `EngineStats`.

The snapshots are what SGLang serves at `/v1/loads` and reads from shared memory in
`TokenizerManager.get_loads()` (cheap, no scheduler round trip): one per data-parallel rank, so
with attention DP every GPU reports its own requests and KV pool and the sums are the
instance's. The same quantities appear as Prometheus series; `PROMETHEUS_EQUIVALENTS` names them
as they reach Prometheus when SGLang runs under Ray, for dashboards that watch SGLang directly.

What the engine sees of its own streams (arrivals, time to first token, tokens per chunk,
output lengths) goes through its `LoadMeter`; the scheduler's side of the picture (requests
running and queued, KV pages, prompt tokens awaiting prefill, prefill work) comes from the
snapshots and replaces the meter's guesses at it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from serve.engine.base import EngineStats

# Ray's namespace for application metrics: its exporter serves a metric `m` as `ray_m`.
RAY_METRIC_PREFIX = "ray_"


def ray_exported_name(name: str) -> str:
    """The name an SGLang metric carries on Ray's Prometheus endpoint. Under Ray (RayEngine
    with metrics on) SGLang records through `ray.util.metrics`, whose names may hold only
    `[a-zA-Z0-9_]`: its wrappers turn every other character into `_`
    (`srt/observability/ray_wrappers.py`), so `sglang:num_running_reqs` is exported as
    `ray_sglang_num_running_reqs`. Run by hand, SGLang serves the `sglang:` names."""
    return RAY_METRIC_PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", name)


# EngineStats field -> the SGLang 0.5.23 metric that carries the same quantity (per DP rank),
# as SGLang names it (`shared/data/sglang-0.5.23/prometheus_metrics.txt`).
SGLANG_METRICS: Mapping[str, str] = MappingProxyType({
    "running": "sglang:num_running_reqs",
    "waiting": "sglang:num_queue_reqs",
    "kv_pages_used": "sglang:num_used_tokens",
    "kv_pages_total": "sglang:max_total_num_tokens",
    "prefix_cache_hit_tokens": "sglang:cached_tokens_total",
    "prompt_tokens": "sglang:prompt_tokens_total",
    "generation_tokens_per_s": "sglang:gen_throughput",
})

# ... and as r1serve's replicas export it: under Ray.
PROMETHEUS_EQUIVALENTS: Mapping[str, str] = MappingProxyType(
    {field: ray_exported_name(name) for field, name in SGLANG_METRICS.items()})


def latest_loads(loads: Iterable[Mapping[str, Any] | Any]) -> list[Mapping[str, Any]]:
    """The newest snapshot of each DP rank, as dicts. `loads` holds `LoadSnapshot`s or their
    dicts."""
    latest: dict[int, Mapping[str, Any]] = {}
    for load in loads:
        d = load if isinstance(load, Mapping) else load.to_dict({"core"})
        rank = int(d.get("dp_rank", 0))
        if rank not in latest or d.get("timestamp", 0) >= latest[rank].get("timestamp", 0):
            latest[rank] = d
    return list(latest.values())


def merge_loads(stats: EngineStats, ranks: Iterable[Mapping[str, Any]]) -> EngineStats:
    """`stats` with the scheduler's own counts from the ranks' latest snapshots, summed.
    Before the first snapshot arrives, `stats` stands as it is."""
    ranks = list(ranks)
    if not ranks:
        return stats

    def total(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in ranks)

    page_size = stats.page_size
    pool_tokens = int(total("max_total_num_tokens") or total("num_total_tokens"))
    return dataclasses.replace(
        stats,
        running=int(total("num_running_reqs")),
        waiting=int(total("num_waiting_reqs")),
        kv_pages_used=math.ceil(int(total("num_used_tokens")) / page_size),
        kv_pages_total=pool_tokens // page_size,
        queued_prefill_tokens=int(total("num_waiting_uncached_tokens")),
        max_running=int(total("max_running_requests")) or stats.max_running,
    )


class PrefillCounters:
    """SGLang's cumulative per-rank prefill counters (uncached prompt tokens computed, and
    microseconds spent in prefill steps) turned into the prefill work done since the last
    read, which the engine's meter turns into prefill speed and capacity."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[int, int]] = {}

    def since_last(self, ranks: Iterable[Mapping[str, Any]]) -> tuple[int, float]:
        """Prompt tokens prefilled and seconds spent on them since the previous call. Ranks
        prefill side by side, so the instance's time is the busiest rank's. A rank's first
        reading (or one whose counters went back: it restarted) only sets its baseline."""
        tokens, busy_s = 0, 0.0
        for r in ranks:
            rank = int(r.get("dp_rank", 0))
            now = (int(r.get("total_prefill_uncached_tokens") or 0),
                   int(r.get("total_prefill_busy_us") or 0))
            before = self._last.get(rank)
            self._last[rank] = now
            if before is None or now[0] < before[0] or now[1] < before[1]:
                continue
            tokens += now[0] - before[0]
            busy_s = max(busy_s, (now[1] - before[1]) / 1e6)
        return tokens, busy_s
