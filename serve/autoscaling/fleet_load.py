"""`FleetLoad`: the engine replicas' autoscaling metrics, per replica and summed, and the demand
each signal puts on the fleet in replicas.

Serve averages each metric a replica returns from `record_autoscaling_stats()` (see
`serve.engine.replica_stats`) over `look_back_period_s` and hands them to the policy as
`ctx.aggregated_metrics[name][replica_id]`. The demands:

- `kv`: KV tokens in use plus the prompts waiting to be admitted, over the KV a replica should
  hold (`kv_utilization` of its pool). Streams grow after admission, so a full pool stalls
  admissions, and time to first token with them.
- `prefill`: prompt tokens computed per second plus the queued prompt tokens that must start
  within the TTFT objective, over a replica's measured prefill speed at `prefill_utilization`.
- `decode`: the larger of the streams now running or waiting over the streams a replica
  decodes within the ITL objective, and the output tokens per second the arrivals are expected
  to take over what a replica decodes per second at that many streams. Expected output, not
  max_tokens: an R1 client asks for 32K tokens and uses a tenth of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from serve.autoscaling.replica_capacity import Capacity, ReplicaSample
from serve.autoscaling.targets import ScalingTargets


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
    startup_s: float = 0.0
    ready_at: float = 0.0
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    itl_mean_s: float | None = None
    prefill_capacity_tokens_per_s: float | None = None

    @classmethod
    def from_metrics(cls, replica_id: Any, m: Mapping[str, float]) -> ReplicaLoad:
        known = {f.name for f in fields(cls)} - {"replica_id"}
        return cls(replica_id, **{k: float(v) for k, v in m.items() if k in known})

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

    @property
    def arrival_tokens_per_s(self) -> float:
        """The load the forecast follows: prompt plus expected output tokens arriving."""
        return self.total("arrival_prompt_tokens_per_s") + self.total(
            "arrival_decode_tokens_per_s")

    def mean_prompt_tokens(self) -> float:
        requests = self.total("arrival_requests_per_s")
        return self.total("arrival_prompt_tokens_per_s") / requests if requests > 0 else 0.0

    def itl_s(self) -> float | None:
        """Mean inter-token latency over the fleet's running streams."""
        weighted = [(x.running, x.itl_mean_s) for x in self.replicas if x.itl_mean_s]
        streams = sum(b for b, _ in weighted)
        return sum(b * y for b, y in weighted) / streams if streams > 0 else None

    def ttft_s(self) -> tuple[float | None, float | None]:
        """TTFT p90 (mean over replicas, weighted by arrivals) and p99 (the worst replica)."""
        p90 = [(x.arrival_requests_per_s, x.ttft_p90_s) for x in self.replicas
               if x.ttft_p90_s is not None]
        weight = sum(w for w, _ in p90)
        mean90 = (sum(w * v for w, v in p90) / weight if weight > 0 else
                  max((v for _, v in p90), default=None))
        p99 = [x.ttft_p99_s for x in self.replicas if x.ttft_p99_s is not None]
        return mean90, max(p99, default=None)

    def demand(self, cap: Capacity, t: ScalingTargets) -> dict[str, float]:
        """Replicas each signal needs for the load now (see the module's docstring)."""
        out: dict[str, float] = {}
        if cap.kv_tokens > 0:
            kv = (sum(x.kv_utilization * x.kv_tokens_total for x in self.replicas)
                  + self.total("queued_prefill_tokens")
                  + self.at_handle * self.mean_prompt_tokens())
            out["kv"] = kv / (cap.kv_tokens * t.kv_utilization)
        if cap.prefill_tokens_per_s:
            work = (self.total("prefill_tokens_per_s")
                    + self.total("queued_prefill_tokens") / t.ttft_p90_s)
            out["prefill"] = work / (cap.prefill_tokens_per_s * t.prefill_utilization)
        if cap.streams != float("inf"):
            streams = self.total("running") + self.total("waiting") + self.at_handle
            out["decode"] = streams / max(cap.streams, 1.0)
            if cap.decode_tokens_per_s:
                coming = self.total("arrival_decode_tokens_per_s") / cap.decode_tokens_per_s
                out["decode"] = max(out["decode"], coming)
        return out
