"""`FleetLoad`: the engine replicas' autoscaling metrics, per replica and summed, and the demand
each signal puts on the fleet in replicas.

Serve averages each metric a replica returns from `record_autoscaling_stats()` (see
`serve.engine.replica_stats`) over `look_back_period_s` and hands them to the policy as
`ctx.aggregated_metrics[name][replica_id]`. The demands:

- `kv`: KV tokens in use plus the prompts waiting to be admitted, over the KV a replica may
  hold while TTFT meets its objective (the share `SloShare` learns). Streams grow after
  admission, so a full pool stalls admissions, and time to first token with them.
- `prefill`: prompt tokens computed per second over a replica's measured prefill speed at
  `prefill_utilization` (prompts queued for want of KV are the `kv` signal's).
- `decode`: the larger of the streams now running or waiting over the streams a replica
  decodes within the ITL objective, and the output tokens per second the arrivals are expected
  to take over what a replica decodes per second at that many streams. Expected output, not
  max_tokens: an R1 client asks for 32K tokens and uses a tenth of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from serve.autoscaling.load_forecast import Arrivals
from serve.autoscaling.replica_capacity import Capacity, ReplicaSample
from serve.autoscaling.targets import ScalingTargets
from serve.engine.load_meter import TTFT_THRESHOLDS_S
from serve.engine.replica_stats import ttft_over_key


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's metrics over Serve's look-back window (names as in `replica_stats`)."""

    replica_id: Any = None
    running: float = 0.0
    waiting: float = 0.0
    max_running: float = 0.0
    kv_utilization: float = 0.0
    kv_tokens_total: float = 0.0
    queued_prefill_tokens: float = 0.0
    expected_remaining_decode_tokens: float = 0.0
    decode_bound_tokens: float = 0.0
    longest_decode_bound_tokens: float = 0.0
    generation_tokens_per_s: float = 0.0
    prefill_tokens_per_s: float = 0.0
    arrival_requests_per_s: float = 0.0
    arrival_prompt_tokens_per_s: float = 0.0
    arrival_decode_tokens_per_s: float = 0.0
    arrival_kv_token_steps_per_s: float = 0.0
    startup_s: float = 0.0
    ready_at: float = 0.0
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    itl_mean_s: float | None = None
    prefill_capacity_tokens_per_s: float | None = None

    first_tokens_per_s: float = 0.0
    ttft_over_per_s: tuple[float, ...] = ()  # per `TTFT_THRESHOLDS_S`
    ttft_over_waiting_per_s: tuple[float, ...] = ()  # ... those only queueing made late

    @classmethod
    def from_metrics(cls, replica_id: Any, m: Mapping[str, float]) -> ReplicaLoad:
        counted = ("ttft_over_per_s", "ttft_over_waiting_per_s")
        known = {f.name for f in fields(cls)} - {"replica_id", *counted}
        over, waiting = (tuple(float(m.get(ttft_over_key(t, w), 0.0)) for t in TTFT_THRESHOLDS_S)
                         for w in (False, True))
        return cls(replica_id, **{k: float(v) for k, v in m.items() if k in known},
                   ttft_over_per_s=over, ttft_over_waiting_per_s=waiting)

    def sample(self) -> ReplicaSample:
        return ReplicaSample(self.kv_tokens_total, self.max_running, self.running,
                             self.itl_mean_s, self.prefill_capacity_tokens_per_s)

    def drain_s(self, itl_fallback_s: float) -> float:
        """How long its streams could still run, by their bound: the longest stream's
        max_tokens - generated at its inter-token latency."""
        return self.longest_decode_bound_tokens * (self.itl_mean_s or itl_fallback_s)


def replica_loads(metrics: Mapping[str, Mapping[Any, float]],
                  replicas: Sequence[Any]) -> list[ReplicaLoad]:
    """Regroup Serve's metric -> replica -> value into one `ReplicaLoad` per replica that
    reported anything, oldest first (by the time it became ready)."""
    out = []
    for r in replicas:
        m = {name: per[r] for name, per in metrics.items() if r in per}
        if m:
            out.append(ReplicaLoad.from_metrics(r, m))
    return sorted(out, key=lambda x: x.ready_at)


@dataclass(frozen=True)
class FleetLoad:
    replicas: tuple[ReplicaLoad, ...]
    at_handle: float  # requests waiting at the handles for a replica

    @classmethod
    def of(cls, loads: Sequence[ReplicaLoad], total_requests: float) -> FleetLoad:
        at_replicas = sum(x.running + x.waiting for x in loads)
        return cls(tuple(loads), max(0.0, total_requests - at_replicas))

    def total(self, name: str) -> float:
        return sum(getattr(x, name) for x in self.replicas)

    def arrivals(self) -> Arrivals:
        """What the forecast follows: requests arriving per second, their prompt plus
        expected decode tokens and their expected KV token-steps."""
        return Arrivals(self.total("arrival_requests_per_s"),
                        self.total("arrival_prompt_tokens_per_s")
                        + self.total("arrival_decode_tokens_per_s"),
                        self.total("arrival_kv_token_steps_per_s"))

    def mean_prompt_tokens(self) -> float:
        requests = self.total("arrival_requests_per_s")
        return self.total("arrival_prompt_tokens_per_s") / requests if requests > 0 else 0.0

    def itl_s(self) -> float | None:
        """Mean inter-token latency over the fleet's running streams."""
        weighted = [(x.running, x.itl_mean_s) for x in self.replicas if x.itl_mean_s]
        streams = sum(b for b, _ in weighted)
        return sum(b * y for b, y in weighted) / streams if streams > 0 else None

    def first_tokens_over(self, objective_s: float, waiting: bool = False) -> float:
        """First tokens per second, fleet-wide, slower than `objective_s` (with `waiting`:
        those only queueing made late): the replicas' counts over the thresholds either side
        of it, interpolated in log time."""
        counts = [x.ttft_over_waiting_per_s if waiting else x.ttft_over_per_s
                  for x in self.replicas]
        over = [sum(c[i] for c in counts if c) for i in range(len(TTFT_THRESHOLDS_S))]
        if objective_s <= TTFT_THRESHOLDS_S[0]:
            return over[0]
        for i in range(1, len(TTFT_THRESHOLDS_S)):
            lo, hi = TTFT_THRESHOLDS_S[i - 1], TTFT_THRESHOLDS_S[i]
            if objective_s <= hi:
                f = math.log(objective_s / lo) / math.log(hi / lo)
                return over[i - 1] + f * (over[i] - over[i - 1])
        return over[-1]

    def kv_wanted(self) -> float:
        """KV tokens in use plus the prompts waiting for KV, at the replicas and the handle."""
        return (sum(x.kv_utilization * x.kv_tokens_total for x in self.replicas)
                + self.total("queued_prefill_tokens")
                + self.at_handle * self.mean_prompt_tokens())

    def kv_share(self) -> float:
        """`kv_wanted` over the replicas' pools."""
        pool = self.total("kv_tokens_total")
        return self.kv_wanted() / pool if pool > 0 else 0.0

    def demand(self, cap: Capacity, t: ScalingTargets, kv_share: float,
               kv_token_steps: float = 0.0) -> dict[str, float]:
        """Replicas each signal needs for the load now (see the module's docstring);
        `kv_token_steps`: the arrivals' KV token-steps per second, on their trend."""
        out: dict[str, float] = {}
        if cap.kv_tokens > 0:
            itl = self.itl_s()
            steady = kv_token_steps * itl if itl else 0.0  # Little's law
            out["kv"] = max(self.kv_wanted(), steady) / (cap.kv_tokens * kv_share)
        if cap.prefill_tokens_per_s:
            out["prefill"] = self.total("prefill_tokens_per_s") / (
                cap.prefill_tokens_per_s * t.prefill_utilization)
        if cap.streams != float("inf"):
            streams = self.total("running") + self.total("waiting") + self.at_handle
            out["decode"] = streams / max(cap.streams, 1.0)
            if cap.decode_tokens_per_s:
                coming = self.total("arrival_decode_tokens_per_s") / cap.decode_tokens_per_s
                out["decode"] = max(out["decode"], coming)
        return out
