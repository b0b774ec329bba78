"""The dicts an engine replica hands Ray Serve: `record_routing_stats()` for the router and
`record_autoscaling_stats()` for the autoscaling policy. Live replicas (`EngineDeployment`)
and the simulator's modelled ones make them here, from the same `EngineStats`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from serve.engine.base import EngineStats
from serve.engine.load_meter import TTFT_THRESHOLDS_S

# Measured quantities an engine may not have yet (no request finished, none prefilled): left
# out of the autoscaling metrics until it has, so Serve's averages hold only real readings.
_OPTIONAL = ("ttft_p90_s", "ttft_p99_s", "itl_mean_s", "prefill_capacity_tokens_per_s")
_ALWAYS = ("running", "waiting", "max_running", "queued_prefill_tokens", "first_tokens_per_s",
           "expected_remaining_decode_tokens", "decode_bound_tokens",
           "longest_decode_bound_tokens", "generation_tokens_per_s", "prefill_tokens_per_s",
           "arrival_requests_per_s", "arrival_prompt_tokens_per_s",
           "arrival_decode_tokens_per_s", "arrival_kv_token_steps_per_s")


def routing_stats(stats: EngineStats) -> dict[str, Any]:
    """What the request router sees of a replica: every field of its stats (a shallow copy:
    the block digest is an immutable tuple of thousands, not worth copying per report)."""
    return {f.name: getattr(stats, f.name) for f in fields(stats)}


def autoscaling_stats(stats: EngineStats, *, startup_s: float,
                      ready_at: float) -> dict[str, float]:
    """What the autoscaling policy sees of a replica: its stats as numbers, the KV pool in
    tokens, how long the replica took to start (`startup_s`) and when it became ready
    (`ready_at`, wall-clock seconds: Serve removes the newest replica first)."""
    metrics = {name: float(getattr(stats, name)) for name in _ALWAYS}
    for name in _OPTIONAL:
        value = getattr(stats, name)
        if value is not None:
            metrics[name] = float(value)
    for threshold, rate in zip(TTFT_THRESHOLDS_S, stats.ttft_over_per_s, strict=False):
        metrics[ttft_over_key(threshold)] = rate
    for threshold, rate in zip(TTFT_THRESHOLDS_S, stats.ttft_over_waiting_per_s, strict=False):
        metrics[ttft_over_key(threshold, waiting=True)] = rate
    metrics["kv_utilization"] = stats.kv_pages_used / max(stats.kv_pages_total, 1)
    metrics["kv_tokens_total"] = float(stats.kv_pages_total * stats.page_size)
    metrics["startup_s"] = startup_s
    metrics["ready_at"] = ready_at
    return metrics


def ttft_over_key(threshold_s: float, waiting: bool = False) -> str:
    """The autoscaling metric of first tokens slower than `threshold_s`, per second (with
    `waiting`: of those, the ones that only queueing made late)."""
    return f"ttft_over_{threshold_s:g}s{'_waiting' if waiting else ''}_per_s"
