"""The replayed workloads: the Mooncake trace's windows and its 3-second clock."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest

from sim.workload import MOONCAKE, MOONCAKE_TICK_S, load_mooncake


def test_the_trace_records_arrivals_on_a_3_second_clock():
    with open(MOONCAKE) as f:
        stamps = [json.loads(line)["timestamp"] for line in f]
    ticks = sorted(set(stamps))
    on_the_clock = [abs(b - a - 1000 * MOONCAKE_TICK_S) <= 1 for a, b in pairwise(ticks)]
    assert sum(on_the_clock) >= 0.99 * len(on_the_clock)  # 3,000 ms apart, give or take 1
    assert len(stamps) / len(ticks) > 9  # about ten requests share each timestamp


def test_each_request_arrives_within_its_tick():
    recorded = {r.rid: r.arrival for r in load_mooncake(limit=1200, tick_s=0)}
    spread = load_mooncake(limit=1200, time_scale=2.0)
    offsets = [2.0 * r.arrival - recorded[r.rid] for r in spread]
    assert all(0.0 <= x < MOONCAKE_TICK_S for x in offsets)
    assert len({r.arrival for r in spread}) == len(spread)  # no two in the same instant
    assert abs(sum(offsets) / len(offsets) - MOONCAKE_TICK_S / 2) < 0.15  # uniform over it
    assert [r.arrival for r in spread] == sorted(r.arrival for r in spread)
    other_seed = {r.rid: r.arrival for r in load_mooncake(limit=1200, time_scale=2.0, seed=1)}
    assert sum(other_seed[r.rid] != r.arrival for r in spread) > 1100


@pytest.mark.parametrize("tick_s", [0.0, MOONCAKE_TICK_S])
def test_a_later_window_of_the_trace_is_the_same_requests_from_time_zero(tick_s):
    whole = {r.rid: r for r in load_mooncake(limit=40, tick_s=tick_s)}
    window = load_mooncake(skip=20, limit=20, tick_s=tick_s)
    shift = next(r.arrival for r in load_mooncake(limit=40, tick_s=0) if r.rid == 20)
    assert min(r.arrival for r in window) < tick_s + 1e-9
    for r in window:
        assert r.blocks == whole[r.rid + 20].blocks
        assert r.arrival == pytest.approx(whole[r.rid + 20].arrival - shift)


def test_a_negative_tick_is_refused():
    with pytest.raises(ValueError, match="tick_s=-1"):
        load_mooncake(limit=1, tick_s=-1.0)
