"""`RouterKnobs`: the prefix-aware router's tuning, and the Serve option that installs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serve.strict_fields import from_fields

ROUTER_CLASS = "serve.routing.prefix_aware_router.PrefixAwareRouter"


@dataclass(frozen=True)
class RouterKnobs:
    """What the cost of sending a request to a replica weighs, in prefill-token units.

    slow = 1 + prefill_slowdown_per_running * running streams
    cost = slow * (queued prefill tokens + uncached prompt tokens)
           - (w - 1) * min(1, (cached / prompt tokens) / m)**2 * cached prompt tokens
           + e * uncached prompt tokens * (intake / mean intake - 1)
           + decode_cost_per_token * outstanding decode tokens
           + kv_penalty_tokens * (max(0, KV use - kv_soft_limit) / (1 - kv_soft_limit))**2
    w, m = cache_hit_weight, affinity_min_match; on a replica whose cache keeps what it holds,
    retained_hit_weight, retained_min_match and no eviction term. Intake: the uncached prompt
    tokens this router sent the replica, decayed over intake_horizon_s; the mean is over the
    candidates. e is eviction_weight (intake evened out), or -concentration_weight (intake
    concentrated) while under concentrate_below_share of the prefix tokens prompts reused lately
    came back within the evicting caches' lifetime (`ReuseIntervals`).
    """

    # Why each value: benchmarks/router_knobs.md, from the Mooncake replay (router_replay.py).
    cache_hit_weight: float = 64.0  # w: a cached token's worth in computed ones, match >= m
    affinity_min_match: float = 0.2  # m: match fraction below which the bonus shrinks (squared)
    retained_hit_weight: float = 256.0  # w where the replica's cache keeps what it holds
    retained_min_match: float = 0.1  # m where the replica's cache keeps what it holds
    eviction_weight: float = 2.0  # e while evening out intake: a busy cache evicts sooner
    intake_horizon_s: float = 600.0  # decay of a replica's intake (uncached tokens sent it)
    concentration_weight: float = 4.0  # -e while concentrating intake on fewer caches
    concentrate_below_share: float = 0.75  # concentrate below this reuse-within-lifetime share
    decode_cost_per_token: float = 0.05  # prefill tokens of delay per outstanding decode token
    prefill_slowdown_per_running: float = 0.00057  # prefill slowdown per running stream
    kv_penalty_tokens: float = 65536.0  # penalty at a full KV cache, quadratic above the soft limit
    kv_soft_limit: float = 0.80  # KV utilisation where the penalty starts
    speculative_ttl_s: float = 60.0  # a sent prefix is guessed cached this long after it ends
    report_lag_s: float = 2.0  # requests sent within this of a report are not yet in it
    session_overload_tokens: float = 32768.0  # a session leaves a replica this much busier
    kv_hard_limit: float = 0.95  # ... or one whose KV is this full; such replicas rank last
    prior_output_tokens: int = 3000  # median output length before any finished (R1's)
    max_sessions: int = 100_000  # session -> replica entries kept (LRU)
    stats_period_s: float = 2.0  # how often Serve asks replicas for record_routing_stats()

    def __post_init__(self) -> None:
        checks = [
            ("cache_hit_weight", self.cache_hit_weight >= 0),
            ("affinity_min_match", 0 <= self.affinity_min_match <= 1),
            ("retained_hit_weight", self.retained_hit_weight >= 0),
            ("retained_min_match", 0 <= self.retained_min_match <= 1),
            ("prefill_slowdown_per_running", self.prefill_slowdown_per_running >= 0),
            ("eviction_weight", self.eviction_weight >= 0),
            ("intake_horizon_s", self.intake_horizon_s > 0),
            ("concentration_weight", self.concentration_weight >= 0),
            ("concentrate_below_share", 0 <= self.concentrate_below_share <= 1),
            ("decode_cost_per_token", self.decode_cost_per_token >= 0),
            ("kv_penalty_tokens", self.kv_penalty_tokens >= 0),
            ("kv_soft_limit", 0 < self.kv_soft_limit < 1),
            ("speculative_ttl_s", self.speculative_ttl_s > 0),
            ("report_lag_s", self.report_lag_s >= 0),
            ("session_overload_tokens", self.session_overload_tokens >= 0),
            ("kv_hard_limit", 0 < self.kv_hard_limit <= 1),
            ("prior_output_tokens", self.prior_output_tokens >= 1),
            ("max_sessions", self.max_sessions >= 1),
            ("stats_period_s", self.stats_period_s > 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"RouterKnobs.{name}={getattr(self, name)!r} is out of range")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterKnobs:
        """Knobs from `request_router_kwargs`; unknown keys are an error naming the key."""
        return from_fields(cls, data, "router knob(s)")


def request_router_config(knobs: RouterKnobs | None = None) -> dict[str, Any]:
    """The `request_router_config` for `serve.deployment(...).options(...)` of the engine
    deployment: our router class by import path, its knobs as kwargs, the stats period."""
    knobs = knobs or RouterKnobs()
    return {
        "request_router_class": ROUTER_CLASS,
        "request_router_kwargs": asdict(knobs),
        "request_routing_stats_period_s": knobs.stats_period_s,
        "request_routing_stats_timeout_s": max(5.0, 2 * knobs.stats_period_s),
    }
