"""The router's own Prometheus metrics, in a registry of their own.

`predicted_cached_tokens` is what the router expected the chosen replica to hold of each prompt;
set beside the engine's reported `prefix_cache_hit_tokens` it shows how well the router's view of
the replicas' caches matches reality. The registry is ours, not the process default, so tests
and several routers in one process do not collide; expose it with
`prometheus_client.generate_latest(ROUTING_REGISTRY)`.

`r1serve_router_requests_total{reason}` counts requests by why their replica was chosen, as the
router core said (`Choice.reason`): `cost`, `session`, `power_of_two` (before any replica has
reported), or `fallback` when Serve placed the request past the first choice (at its limit).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTING_REGISTRY = CollectorRegistry(auto_describe=True)

_TOKEN_BUCKETS = (0, 16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)

ROUTED_REQUESTS = Counter(
    "r1serve_router_requests", "Requests routed, by how the replica was chosen.",
    ["reason"], registry=ROUTING_REGISTRY)
PROMPT_TOKENS = Counter(
    "r1serve_router_prompt_tokens", "Prompt tokens of routed requests.",
    registry=ROUTING_REGISTRY)
PREDICTED_CACHED_TOKENS = Counter(
    "r1serve_router_predicted_cached_tokens",
    "Prompt tokens the router predicted the chosen replica already caches.",
    registry=ROUTING_REGISTRY)
PREDICTED_CACHED_PER_REQUEST = Histogram(
    "r1serve_router_predicted_cached_tokens_per_request",
    "Predicted cached prompt tokens of each routed request.",
    buckets=_TOKEN_BUCKETS, registry=ROUTING_REGISTRY)
INTAKE_WEIGHT = Gauge(
    "r1serve_router_intake_weight",
    "Weight of full caches' recent intake in the routing cost: positive spreads new prompts "
    "evenly, negative concentrates them (most reused history returns after caches turn over).",
    registry=ROUTING_REGISTRY)


def routing_totals() -> dict[str, float]:
    """Totals so far in this process: routed requests, their prompt tokens, and the prompt
    tokens the router predicted to be cached where it sent them."""
    def total(name: str) -> float:
        return sum(s.value for m in ROUTING_REGISTRY.collect() for s in m.samples
                   if s.name == name)
    return {"requests": total("r1serve_router_requests_total"),
            "prompt_tokens": total("r1serve_router_prompt_tokens_total"),
            "predicted_cached_tokens": total("r1serve_router_predicted_cached_tokens_total")}


def record_routed(reason: str, prompt_tokens: int, predicted_cached_tokens: int,
                  intake_weight: float) -> None:
    """Count one routed request and the router's prediction for it; `intake_weight` is the
    router's weight on intake after it (`RouterCore.intake_weight`)."""
    INTAKE_WEIGHT.set(intake_weight)
    ROUTED_REQUESTS.labels(reason=reason).inc()
    PROMPT_TOKENS.inc(prompt_tokens)
    PREDICTED_CACHED_TOKENS.inc(predicted_cached_tokens)
    PREDICTED_CACHED_PER_REQUEST.observe(predicted_cached_tokens)
