"""The fleet simulator on a small synthetic reasoning workload."""

from __future__ import annotations

from dataclasses import replace

from serve.autoscaling.fleet_sim import FleetConfig, run_fleet
from serve.autoscaling.replica_model import ReplicaModel, ReplicaSpec, SimRequest
from serve.autoscaling.sim_router import CoreSimRouter
from serve.autoscaling.simulate import Slo, compare
from serve.autoscaling.targets import ScalingTargets
from serve.autoscaling.workload import synthetic_reasoning

CFG = FleetConfig(spec=ReplicaSpec(cold_start_s=60.0), initial_replicas=1, max_replicas=6)


def small() -> list[SimRequest]:
    return synthetic_reasoning(sessions=40, session_rate_per_s=0.2, seed=3)


def test_every_request_finishes_and_the_run_is_deterministic():
    a = compare(small(), CFG, ScalingTargets(), 8.0, 3, Slo())
    b = compare(small(), CFG, ScalingTargets(), 8.0, 3, Slo())
    assert a == b
    assert [s.policy for s in a] == ["ours", "serve-default@8", "fixed-3"]
    for s in a:
        assert s.requests == len(small()) and s.replica_hours > 0


def test_replica_model_timings_follow_the_rates():
    spec = ReplicaSpec(prefill_tokens_per_s=10_000, step_base_s=0.01, step_per_seq_s=0.0,
                       prefill_chunk_tokens=1000, block_tokens=100)
    rep = ReplicaModel(0, spec)
    req = SimRequest(rid=0, arrival=0.0, prompt_tokens=1000, output_tokens=101,
                     blocks=tuple(range(10)))
    done: list[SimRequest] = []
    rep.submit(req, done)
    rep.advance(100.0, done)
    # Prefill: one 1000-token chunk per (0.01 + 0.1)s step; then 100 decode steps of 0.01 s.
    assert abs(req.ttft - 0.11) < 1e-6 and abs(req.finished_at - 1.11) < 1e-6
    again = replace(req, rid=1, arrival=2.0, first_token_at=None, finished_at=None)
    rep.advance(2.0, done)
    rep.submit(again, done)
    rep.advance(100.0, done)
    assert again.cached_tokens == 1000  # the whole prompt came from the prefix cache


def test_fixed_fleet_never_changes_size():
    result = run_fleet(small(), CoreSimRouter(), replace(CFG, initial_replicas=2),
                       lambda m, a, c, t: 2)
    assert {n for _, n in result.timeline} == {2}
    assert all(r.finished_at is not None for r in result.requests)


def _serve_one(rep: ReplicaModel, rid: int, blocks: tuple[int, ...], at: float) -> SimRequest:
    req = SimRequest(rid=rid, arrival=at, prompt_tokens=100 * len(blocks), output_tokens=2,
                     blocks=blocks)
    done: list[SimRequest] = []
    rep.advance(at, done)
    rep.submit(req, done)
    rep.advance(at + 50.0, done)
    assert req in done
    return req


def test_the_prefix_cache_evicts_leaves_first_so_what_is_left_still_matches():
    # Room for 6 blocks: a 4-block conversation, then a 4-block stranger evicts two blocks.
    # A radix cache gives up the conversation's last two blocks, not its first ones, so its
    # next turn still reuses the first two.
    spec = ReplicaSpec(kv_capacity_tokens=600, block_tokens=100)
    rep = ReplicaModel(0, spec)
    _serve_one(rep, 0, (1, 2, 3, 4), 0.0)
    _serve_one(rep, 1, (9, 8, 7, 6), 100.0)
    again = _serve_one(rep, 2, (1, 2, 3, 4, 5), 200.0)
    assert again.cached_tokens == 200


def test_blocks_evicted_to_the_host_tier_continue_the_gpu_prefix():
    spec = ReplicaSpec(kv_capacity_tokens=600, host_cache_tokens=1000, block_tokens=100)
    rep = ReplicaModel(0, spec)
    _serve_one(rep, 0, (1, 2, 3, 4), 0.0)
    _serve_one(rep, 1, (9, 8, 7, 6), 100.0)
    again = _serve_one(rep, 2, (1, 2, 3, 4, 5), 200.0)
    assert again.cached_tokens == 400  # two blocks from GPU memory, two from the host tier
