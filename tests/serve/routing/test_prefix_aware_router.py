"""The Serve adapter counts each routed request under the reason its replica was chosen for,
and hands the core the request's own sampling limits."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

from serve.engine.base import GenerationRequest, SamplingParams
from serve.routing.prefix_aware_router import FALLBACK, PrefixAwareRouter
from serve.routing.routing_metrics import ROUTING_REGISTRY

DEPLOYMENT = DeploymentID(name="EngineDeployment", app_name="r1serve")
PAGE = 16


def replica(rid: str, stats: dict | None = None) -> SimpleNamespace:
    """What the router reads of a Serve `RunningReplica`."""
    return SimpleNamespace(replica_id=ReplicaID(rid, DEPLOYMENT), routing_stats=stats or {})


def stats(queued_prefill: int = 0) -> dict:
    return {"running": 0, "waiting": 0, "kv_pages_used": 0, "kv_pages_total": 4096,
            "page_size": PAGE, "queued_prefill_tokens": queued_prefill,
            "expected_remaining_decode_tokens": 0, "prefix_cache_hit_tokens": 0,
            "prompt_tokens": 0, "generation_tokens_per_s": 0.0, "cached_block_hashes": ()}


def pending(rid: str, session: str | None = None, max_tokens: int = 777) -> SimpleNamespace:
    tokens = tuple(random.Random(rid).choices(range(2, 30000), k=4 * PAGE))
    gen = GenerationRequest(rid, tokens, SamplingParams(max_tokens=max_tokens),
                            session_id=session)
    return SimpleNamespace(args=(gen,), kwargs={}, routing_context=SimpleNamespace(),
                           metadata=SimpleNamespace(internal_request_id=rid, session_id=None))


def router(**knobs) -> PrefixAwareRouter:
    r = PrefixAwareRouter(deployment_id=DEPLOYMENT,
                          handle_source=DeploymentHandleSource.UNKNOWN)
    r.initialize_state(read_decision=lambda: None, stats_period_s=60.0, **knobs)
    return r


def routed(reason: str) -> float:
    return ROUTING_REGISTRY.get_sample_value("r1serve_router_requests_total",
                                             {"reason": reason}) or 0.0


def route(r: PrefixAwareRouter, replicas: list, request, to: int = 0) -> str:
    """Route `request`; Serve places it on the `to`-th replica of the ranking."""
    ranked = asyncio.run(r.choose_replicas(replicas, request))
    chosen = ranked[to][0].replica_id
    r.on_request_routed(request, chosen, None)
    return chosen.unique_id


def test_cold_start_choices_are_counted_as_power_of_two() -> None:
    r = router()
    before = routed("power_of_two")
    route(r, [replica("a"), replica("b")], pending("cold"))
    assert routed("power_of_two") == before + 1


def test_a_session_moved_off_its_overloaded_replica_is_counted_by_cost() -> None:
    r = router(session_overload_tokens=10_000)
    idle = [replica("a", stats()), replica("b", stats())]
    home = route(r, idle, pending("s-1", session="s"))
    before_session, before_cost = routed("session"), routed("cost")
    busy = [replica(x.replica_id.unique_id,
                    stats(queued_prefill=50_000) if x.replica_id.unique_id == home else stats())
            for x in idle]
    assert route(r, busy, pending("s-2", session="s")) != home
    assert (routed("session"), routed("cost")) == (before_session, before_cost + 1)
    again = [replica(x.replica_id.unique_id, stats()) for x in idle]
    route(r, again, pending("s-3", session="s"))
    assert routed("session") == before_session + 1


def test_a_request_placed_past_the_first_choice_is_counted_as_fallback() -> None:
    r = router()
    before = routed(FALLBACK)
    route(r, [replica("a", stats()), replica("b", stats())], pending("f"), to=1)
    assert routed(FALLBACK) == before + 1


def test_the_routed_request_carries_the_requests_max_tokens() -> None:
    r = router()
    assert r._routed_request(pending("m", max_tokens=321)).max_tokens == 321
