"""`ReplicaModel`'s reports, where no live engine can be put beside it (see
test_stats_contract.py for the field-by-field comparison with the reference engine)."""

from __future__ import annotations

import math

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
