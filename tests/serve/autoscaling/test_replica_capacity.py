"""What a replica carries, learnt from reports."""

from __future__ import annotations

import math

from serve.autoscaling.replica_capacity import CapacityModel, ReplicaSample


def sample(running: float, itl: float | None, prefill: float | None = 20_000.0):
    return ReplicaSample(kv_tokens=600_000, max_running=256, running=running, itl_s=itl,
                         prefill_tokens_per_s=prefill)


def test_streams_within_the_itl_objective_come_from_the_fitted_line():
    m = CapacityModel(itl_objective_s=0.2, itl_utilization=0.8)  # plan to 0.16 s
    for b in (10, 40, 80, 120):  # ITL = 0.02 + 0.001 x streams
        m.learn([sample(b, 0.02 + 0.001 * b)])
    cap = m.capacity()
    assert math.isclose(cap.streams, 140.0, rel_tol=1e-6)
    assert math.isclose(cap.decode_tokens_per_s, 140.0 / 0.16, rel_tol=1e-6)


def test_max_running_caps_the_streams():
    m = CapacityModel(0.2, 0.8)
    for b in (10, 40, 80):
        m.learn([sample(b, 0.02 + 0.0001 * b)])
    assert m.capacity().streams == 256


def test_without_a_line_the_stream_limit_is_proportional_and_no_throughput_is_claimed():
    m = CapacityModel(0.2, 0.8)
    m.learn([sample(40, 0.04), sample(40, 0.04)])  # every replica at the same batch
    cap = m.capacity()
    assert math.isclose(cap.streams, 160.0) and cap.decode_tokens_per_s is None


def test_kv_pool_and_prefill_speed_are_what_replicas_report():
    m = CapacityModel(0.2, 0.8)
    m.learn([sample(10, None, prefill=None)])
    assert m.capacity().prefill_tokens_per_s is None and m.capacity().kv_tokens == 600_000
    m.learn([sample(10, None, prefill=18_000.0), sample(10, None, prefill=22_000.0)])
    assert m.capacity().prefill_tokens_per_s == 20_000.0
