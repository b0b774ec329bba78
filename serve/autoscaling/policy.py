"""`TokenLoadPolicy`: a Ray Serve custom autoscaling policy that counts tokens, not requests.

One R1 request may prefill 30K tokens or decode 30K more; counting requests (Serve's default)
cannot tell a fleet of short chats from one of long reasoning streams. The policy reads the
custom metrics each engine replica returns from `record_autoscaling_stats()` — Serve averages
each over `look_back_period_s` per replica and hands them over as
`ctx.aggregated_metrics[name][replica_id]` — and asks how many replicas keep every one of these
at its target:

- KV-cache utilisation (`kv_utilization`),
- queued prefill tokens (`queued_prefill_tokens`),
- expected remaining decode tokens (`expected_remaining_decode_tokens`),
- observed time to first token (`ttft_p90_s`, optional) against the TTFT objective.

It scales down only with headroom on every signal and only when every replica's decode work
would drain well within the drain deadline, so removing one (Serve lets it finish its streams
for `graceful_shutdown_timeout_s`) does not cut a reasoning stream off. Serve itself applies
min/max replicas and the upscale/downscale delays around the policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serve.autoscaling.targets import ScalingTargets


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's custom metrics, averaged over Serve's look-back window."""

    kv_utilization: float = 0.0
    queued_prefill_tokens: float = 0.0
    expected_remaining_decode_tokens: float = 0.0
    ttft_p90_s: float | None = None
    generation_tokens_per_s: float | None = None

    @classmethod
    def from_metrics(cls, m: Mapping[str, float]) -> ReplicaLoad:
        return cls(
            kv_utilization=float(m.get("kv_utilization", 0.0)),
            queued_prefill_tokens=float(m.get("queued_prefill_tokens", 0.0)),
            expected_remaining_decode_tokens=float(m.get("expected_remaining_decode_tokens", 0.0)),
            ttft_p90_s=m.get("ttft_p90_s"),
            generation_tokens_per_s=m.get("generation_tokens_per_s"),
        )


def desired_replicas(t: ScalingTargets, loads: Sequence[ReplicaLoad], current: int) -> int:
    """The replica count the token load asks for, before Serve's bounds and delays."""
    if not loads or current == 0:
        return current
    n = len(loads)
    ttfts = [x.ttft_p90_s for x in loads if x.ttft_p90_s is not None]
    ttft = max(ttfts) if ttfts else 0.0
    needed = max(
        sum(x.kv_utilization for x in loads) / t.kv_utilization,
        sum(x.queued_prefill_tokens for x in loads) / t.queued_prefill_tokens,
        sum(x.expected_remaining_decode_tokens for x in loads) / t.decode_tokens,
        n * ttft / t.ttft_s,  # proportional: TTFT grows with queueing, fleet size cuts it
    )
    if needed > n:  # some signal is over target: enough replicas to bring it back
        return max(current + 1, math.ceil(needed))
    # Scale down only if the smaller fleet would still sit under target with headroom, and no
    # replica holds decode work that would outlast the drain deadline.
    smaller = max(1, math.ceil(needed / t.scale_down_headroom))
    if smaller < current and _drains_in_time(t, loads):
        return max(smaller, current - t.max_scale_down_step)
    return current


def _drains_in_time(t: ScalingTargets, loads: Sequence[ReplicaLoad]) -> bool:
    for x in loads:
        rate = x.generation_tokens_per_s or t.decode_tokens_per_s
        if x.expected_remaining_decode_tokens / max(rate, 1e-9) > t.max_drain_s:
            return False
    return True


class TokenLoadPolicy:
    """The policy Serve calls every control-loop tick; a class so Serve builds it once with
    `policy_kwargs` (the fields of `ScalingTargets`)."""

    def __init__(self, **targets: Any) -> None:
        self.targets = ScalingTargets.from_dict(targets)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """`ctx` is a `ray.serve.config.AutoscalingContext`."""
        loads = replica_loads(ctx.aggregated_metrics or {}, ctx.running_replicas)
        if not loads:  # no metrics yet (replicas starting): hold the current target
            return ctx.target_num_replicas, ctx.policy_state
        return desired_replicas(self.targets, loads, ctx.current_num_replicas), ctx.policy_state


def replica_loads(metrics: Mapping[str, Mapping[Any, float]],
                  replicas: Sequence[Any]) -> list[ReplicaLoad]:
    """Regroup Serve's metric -> replica -> value into one `ReplicaLoad` per replica that
    reported anything."""
    out = []
    for r in replicas:
        m = {name: per[r] for name, per in metrics.items() if r in per}
        if m:
            out.append(ReplicaLoad.from_metrics(m))
    return out
