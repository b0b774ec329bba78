"""`ReplicaModel`'s reports, where no live engine can be put beside it (see
test_stats_contract.py for the field-by-field comparison with the reference engine)."""

from __future__ import annotations

import math
from dataclasses import replace

from sim.replica_model import ReplicaModel, ReplicaSpec, SimRequest


def test_a_stream_counts_every_step_that_has_ended_whatever_the_float_sums():
    # 0.1 s is no binary fraction: the decoded-steps counter lands a hair under whole numbers.
    spec = ReplicaSpec(prefill_tokens_per_s=math.inf, step_base_s=0.1, step_per_seq_s=0.0,
                       prefill_chunk_tokens=100, block_tokens=16)
    rep = ReplicaModel(0, spec)
    done: list[SimRequest] = []
    rep.submit(SimRequest(rid=0, arrival=0.0, prompt_tokens=100, output_tokens=400,
                          blocks=(), max_tokens=400), done)
    for step in range(1, 300):
        rep.advance(round(0.1 * step, 10), done)  # reports every step, as a router polls
        generated = step  # the first token at the end of the prefill step, then one a step
        assert rep.stats().decode_bound_tokens == 400 - generated, step


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
    # the whole prompt but its last block: the engine computes at least its last token
    assert again.cached_tokens == 900


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
