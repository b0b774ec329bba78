"""`ScalingTargets`: the objectives the token-load policy keeps and how it plans capacity, and
the Serve `autoscaling_config` that installs `TokenLoadPolicy` with them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from serve.strict_fields import from_fields

POLICY_PATH = "serve.autoscaling.policy:TokenLoadPolicy"
# Set from the config's own sections (autoscaling delays, drain deadline), never in `targets`.
DERIVED = ("upscale_delay_s", "downscale_delay_s", "drain_deadline_s")


@dataclass(frozen=True)
class ScalingTargets:
    """Objectives (inputs) and planning shares of the token-load policy."""

    # -- service-level objectives
    ttft_p90_s: float = 5.0  # time to first token, 90th percentile
    ttft_p99_s: float = 15.0  # ... 99th: long prompts prefill for seconds on their own
    itl_s: float = 0.2  # mean inter-token latency of a stream (5 tokens/s reads as slow)
    # -- how much of a replica to plan on
    # KV in use, at most: a replica holds tens of R1 streams, whose KV swings by about
    # 1/sqrt(streams) (15% at 40) as long ones start and end; the rest keeps admissions from
    # stalling. The policy plans lower where TTFT shows it must (`SloShare`).
    kv_utilization: float = 0.75
    # Prefill: a queue served at 70% of its speed waits about one prompt's prefill on average.
    prefill_utilization: float = 0.7
    # Streams per replica: those at which the fitted ITL reaches this share of `itl_s`.
    itl_utilization: float = 0.8
    # -- time
    cold_start_s: float = 300.0  # until one is measured: nodes, placement, weights, graphs
    upscale_delay_s: float = 30.0  # Serve's delay before adding: part of the horizon
    downscale_delay_s: float = 300.0  # spare capacity must last this long before a drain
    drain_deadline_s: float = 600.0  # a removed replica's streams get this long to finish
    # -- forecast
    # The arrival trend's fit. The slope's error falls with the window to the power 1.5: with
    # ~1 request/s measured over minute windows, half an hour holds ~30 independent samples,
    # while a day's ramp (hours) is still a line over it.
    trend_window_s: float = 1800.0
    burst_window_s: float = 3600.0  # the forecast's errors are measured over this
    burst_z: float = 2.0  # headroom in spreads of those errors: ~98% of a normal upside
    # Remove a replica only when the load needs at most this share of one fewer: a margin
    # against adding it back at the next fluctuation.
    scale_down_fill: float = 0.9

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (value == 0 and f.name not in ("upscale_delay_s",
                                                           "downscale_delay_s", "burst_z")):
                raise ValueError(f"ScalingTargets.{f.name}={value!r} must be positive")
        for name in ("kv_utilization", "prefill_utilization", "itl_utilization",
                     "scale_down_fill"):
            if getattr(self, name) > 1:
                raise ValueError(f"ScalingTargets.{name}={getattr(self, name)!r} is a share "
                                 "of capacity: at most 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingTargets:
        return from_fields(cls, data, "scaling target(s)")

    @property
    def horizon_s(self) -> float:
        """How far ahead a replica asked for now arrives: Serve's delay plus a cold start."""
        return self.upscale_delay_s + self.cold_start_s


def autoscaling_config(targets: ScalingTargets | None = None, *, min_replicas: int = 1,
                       max_replicas: int = 4, upscale_delay_s: float = 30.0,
                       downscale_delay_s: float = 300.0, drain_deadline_s: float = 600.0,
                       look_back_period_s: float = 30.0) -> dict[str, Any]:
    """The `autoscaling_config` for the engine deployment's `.options(...)`: our policy by
    import path with its targets, the replica bounds, Serve's look-back and delays.

    The policy times scale-down itself (it must drain a replica before Serve removes it), so
    Serve's own downscale delay is 0 and `downscale_delay_s` goes to the policy."""
    targets = replace(targets or ScalingTargets(), upscale_delay_s=upscale_delay_s,
                      downscale_delay_s=downscale_delay_s, drain_deadline_s=drain_deadline_s)
    if not 0 <= min_replicas <= max_replicas:
        raise ValueError(f"need 0 <= min_replicas ({min_replicas}) <= max_replicas "
                         f"({max_replicas})")
    return {
        "min_replicas": min_replicas, "max_replicas": max_replicas,
        "upscale_delay_s": upscale_delay_s, "downscale_delay_s": 0.0,
        "downscale_to_zero_delay_s": downscale_delay_s,
        "look_back_period_s": look_back_period_s,
        "policy": {"policy_function": POLICY_PATH, "policy_kwargs": asdict(targets)},
    }
