"""`ScalingTargets`: what one engine replica should carry, and the Serve `autoscaling_config`
that installs `TokenLoadPolicy` with them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from serve.strict_fields import from_fields

POLICY_PATH = "serve.autoscaling.policy:TokenLoadPolicy"


@dataclass(frozen=True)
class ScalingTargets:
    """Per-replica targets of the token-load policy."""

    kv_utilization: float = 0.70  # of the KV cache, leaving room for streams to grow
    queued_prefill_tokens: float = 32768.0  # prefill waiting per replica
    decode_tokens: float = 400_000.0  # expected remaining decode tokens per replica
    ttft_s: float = 5.0  # p90 time to first token objective
    scale_down_headroom: float = 0.6  # after removal every signal must sit below this x target
    max_scale_down_step: int = 1  # replicas removed per decision
    # Remove a replica only when every replica's decode work drains within this many seconds
    # (keep it well under the drain deadline, `drain.deadline_s`).
    max_drain_s: float = 300.0
    decode_tokens_per_s: float = 2000.0  # a replica's decode throughput when it reports none

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"ScalingTargets.{f.name}={getattr(self, f.name)!r} "
                                 "must be positive")
        if self.scale_down_headroom >= 1:
            raise ValueError("ScalingTargets.scale_down_headroom must be below 1, or the "
                             "fleet would shrink into its own targets and oscillate")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingTargets:
        return from_fields(cls, data, "scaling target(s)")


def autoscaling_config(targets: ScalingTargets | None = None, *, min_replicas: int = 1,
                       max_replicas: int = 4, upscale_delay_s: float = 30.0,
                       downscale_delay_s: float = 600.0,
                       look_back_period_s: float = 30.0) -> dict[str, Any]:
    """The `autoscaling_config` for the engine deployment's `.options(...)`: our policy by
    import path with its targets, the replica bounds and Serve's delays around it."""
    targets = targets or ScalingTargets()
    if not 0 <= min_replicas <= max_replicas:
        raise ValueError(f"need 0 <= min_replicas ({min_replicas}) <= max_replicas "
                         f"({max_replicas})")
    return {
        "min_replicas": min_replicas, "max_replicas": max_replicas,
        "upscale_delay_s": upscale_delay_s, "downscale_delay_s": downscale_delay_s,
        "look_back_period_s": look_back_period_s,
        "policy": {"policy_function": POLICY_PATH, "policy_kwargs": asdict(targets)},
    }
