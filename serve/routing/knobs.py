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
           + decode_cost_per_token * outstanding decode tokens + KV-pressure penalty
    w, m = cache_hit_weight, affinity_min_match; on a replica whose cache keeps what it holds,
    retained_hit_weight, retained_min_match and no eviction term. Intake: the uncached prompt
    tokens this router sent the replica, decayed over intake_horizon_s; the mean is over the
    candidates. e is eviction_weight (intake evened out), or -concentration_weight (intake
    concentrated) while under concentrate_below_share of the prefix tokens prompts reused lately
    came back within the evicting caches' lifetime (`ReuseIntervals`).
    """

    # A predicted cached prompt token is worth this many computed ones when the match is a
    # substantial part of the prompt (affinity_min_match or more): keeping a conversation where
    # its history lives spares the fleet a second copy, so its later turns hit too. Below that
    # fraction the bonus shrinks with the square of the match, towards the compute a hit saves:
    # a short shared prefix (a system prompt) soon sits on every replica, and chasing it would
    # pile unrelated conversations onto one cache, yet a history half evicted still draws its
    # conversation back. (A step at affinity_min_match, no bonus below it, hit 0.2-0.25 points
    # less at 16 replicas on the replay's GPU-only caches, and within 0.05 alike at 4.)
    cache_hit_weight: float = 64.0
    affinity_min_match: float = 0.2
    # Where a replica's cache keeps what it holds (a host-memory tier takes what GPU memory
    # drops, or GPU memory has not filled yet; `ReplicaReport.keeps_what_it_caches`), a prefix
    # there stays put, so a conversation that leaves it recomputes history that would surely
    # have hit: a smaller match earns the bonus and the bonus is larger. All four chosen on the
    # Mooncake replay (benchmarks/router_replay.py): cache_hit_weight against 4-1,000 on the
    # first 1,500 requests, then both weights against 64, 256 and 1,000,000 on the windows of
    # 3,000 at starts 0 and 3000; the fractions against 0.1-0.3 and 0-0.1 on the first window.
    retained_hit_weight: float = 256.0
    retained_min_match: float = 0.1
    # A full GPU cache evicts a token for every uncached one it takes in, so the more a replica
    # has taken in lately, the sooner what it holds is gone: a prefix cached there lives shorter
    # than on a replica that has taken in less. Placing uncached tokens where the fleet's intake
    # is below its mean keeps every cache's lifetime alike, which is what keeps the most
    # conversations cached till their next turn (a cache that lives short loses more than a
    # long-lived one gains). Without it, replicas that drain R1's long decodes first take most
    # new prompts and turn over fastest. Chosen on the Mooncake replay (router_replay.py) with
    # GPU-only caches, 4 windows x 3 seeds: at 16 replicas with R1 outputs, weights 1-4 and
    # horizons from 300 s to unbounded all raised the hit rate 0.4-0.5 points; at 4 replicas a
    # 600 s horizon did better than 300 s.
    eviction_weight: float = 2.0
    intake_horizon_s: float = 600.0
    # Unless the caches turn over faster than most history comes back. A cache keeps a prefix
    # if its next use comes within the cache's lifetime; when most reuse comes later, the hits
    # left are those a long-lived cache keeps, and a lifetime lengthened buys more of them than
    # the same lifetime shortened loses (the reuse intervals grow denser with age there), so
    # the router concentrates intake, letting the replicas that take little keep history long.
    # The lifetime: the evicting caches' KV capacity over the rate this router sent them
    # uncached prompt tokens. Chosen on the replay with GPU-only caches (router_replay.py): at
    # 4 replicas with R1-like outputs about 25-45% of reused tokens came back within a lifetime
    # of about 300 s; -2 and -4 throughout raised the hit rate 0.07 and 0.13 points over +2,
    # and switching at a share of 3/4 raised it 0.20 (seeds 18-35, 4 windows each). With the
    # trace's outputs the share fell to about 50% late in each window and the switch did as
    # well as +2 throughout; at 16 replicas with R1-like outputs it stayed above 3/4, where
    # evening out is what raised the hit rate (the replays came out exactly as with +2).
    concentration_weight: float = 4.0
    concentrate_below_share: float = 0.75
    # One outstanding decode token costs this many prefill tokens of delay. Decode is batched, so
    # a token of it slows a new request far less than a token of prefill ahead of it.
    decode_cost_per_token: float = 0.05
    # An engine step that carries a chunk of prefill also decodes a token for every running
    # stream, so each stream slows prefill by this share. R1 on one 8xH200 node, roughly (the
    # fleet model's `ReplicaSpec`): 0.25 ms per stream against a 435 ms step with an 8K chunk.
    # It steers long prompts away from deep decode batches.
    prefill_slowdown_per_running: float = 0.00057
    # Penalty, in prefill tokens, at a full KV cache; grows quadratically above the soft limit.
    kv_penalty_tokens: float = 65536.0
    kv_soft_limit: float = 0.80  # KV utilisation where the penalty starts
    # The router guesses a replica caches the prefix of each request it sent there, for as
    # long as that request is in flight and this long after it ends, unless a report confirms
    # the guess first.
    speculative_ttl_s: float = 60.0
    # A report is taken this long before it reaches the router: requests sent within this window
    # are not yet in it, so their load is still added on top.
    report_lag_s: float = 2.0
    # Session affinity yields when the session's replica carries this much more load (prefill
    # tokens) than the least loaded candidate, or when its KV cache is past kv_hard_limit.
    session_overload_tokens: float = 32768.0
    kv_hard_limit: float = 0.95
    # Median output length assumed before any request has finished: R1's (`R1_PRIOR`).
    prior_output_tokens: int = 3000
    max_sessions: int = 100_000  # session -> replica entries kept (LRU)
    # How often (seconds) Serve asks replicas for `record_routing_stats()`.
    stats_period_s: float = 2.0

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
