"""`RouterKnobs`: the prefix-aware router's tuning, and the Serve option that installs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serve.strict_fields import from_fields

ROUTER_CLASS = "serve.routing.prefix_aware_router.PrefixAwareRouter"


@dataclass(frozen=True)
class RouterKnobs:
    """What the cost of sending a request to a replica weighs, in prefill-token units.

    cost = uncached prompt tokens - (cache_hit_weight - 1) * cached prompt tokens
                                     (the bonus only when cached >= affinity_min_match * prompt,
                                      host_tier_min_match on a replica with a host tier)
           + queued prefill tokens
           + decode_cost_per_token * outstanding decode tokens + KV-pressure penalty
    """

    # A predicted cached prompt token is worth this many computed ones when the match is a
    # substantial part of the prompt (affinity_min_match): keeping a conversation where its
    # history lives spares the fleet a second copy, so its later turns hit too. Below that
    # fraction a hit counts only as the compute it saves: a short shared prefix (a system
    # prompt) soon sits on every replica, and chasing it would pile unrelated conversations
    # onto one cache. Where a replica's cache reaches past its KV pool (a host-memory tier),
    # nothing it holds churns soon and staying keeps no second copy anywhere, so a smaller
    # match earns the bonus there. Chosen on the Mooncake replay (benchmarks/router_replay.py,
    # all 8 scenarios): the weight on 1,500 requests against 4-1000; the fractions on 3,000
    # requests against 0.1-0.3, and 0-0.1 with a host tier.
    cache_hit_weight: float = 64.0
    affinity_min_match: float = 0.2
    host_tier_min_match: float = 0.1
    # One outstanding decode token costs this many prefill tokens of delay. Decode is batched, so
    # a token of it slows a new request far less than a token of prefill ahead of it.
    decode_cost_per_token: float = 0.05
    # Penalty, in prefill tokens, at a full KV cache; grows quadratically above the soft limit.
    kv_penalty_tokens: float = 65536.0
    kv_soft_limit: float = 0.80  # KV utilisation where the penalty starts
    # Router-side guesses of what a replica caches expire if no report confirms them by then.
    speculative_ttl_s: float = 60.0
    # A report is taken this long before it reaches the router: requests sent within this window
    # are not yet in it, so their load is still added on top.
    report_lag_s: float = 2.0
    # Session affinity yields when the session's replica carries this much more load (prefill
    # tokens) than the least loaded candidate, or when its KV cache is past kv_hard_limit.
    session_overload_tokens: float = 32768.0
    kv_hard_limit: float = 0.95
    # Output length assumed before any request has finished (R1 reasons for thousands of tokens).
    prior_output_tokens: int = 2048
    max_sessions: int = 100_000  # session -> replica entries kept (LRU)
    # How often (seconds) Serve asks replicas for `record_routing_stats()`.
    stats_period_s: float = 2.0

    def __post_init__(self) -> None:
        checks = [
            ("cache_hit_weight", self.cache_hit_weight >= 0),
            ("affinity_min_match", 0 <= self.affinity_min_match <= 1),
            ("host_tier_min_match", 0 <= self.host_tier_min_match <= 1),
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
