"""Arrival processes and the shared schedule."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.arrival import ConcurrencyArrival, RateArrival, TraceArrival
from loadtest.request_spec import Message, RequestSpec, Session


def sessions(n: int, spacing: float = 0.0) -> list[Session]:
    return [Session(f"s{i}", (RequestSpec(f"r{i}", (Message("user", "x"),), 1),),
                    arrival_s=i * spacing) for i in range(n)]


def gaps(schedule) -> np.ndarray:
    return np.diff([s.arrival_s for s in schedule.sessions])


def test_poisson_has_the_asked_rate_and_exponential_gaps() -> None:
    g = gaps(RateArrival(rate=20.0, seed=1).schedule(sessions(20000)))
    assert g.mean() == pytest.approx(1 / 20, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(1.0, abs=0.05)


def test_gamma_burstiness_keeps_the_rate_and_changes_the_spread() -> None:
    bursty = gaps(RateArrival(rate=20.0, burstiness=0.25, seed=1).schedule(sessions(20000)))
    assert bursty.mean() == pytest.approx(1 / 20, rel=0.05)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)  # CV = 1/sqrt(shape)


def test_ramp_up_starts_slow_and_reaches_the_rate() -> None:
    schedule = RateArrival(rate=50.0, ramp_up_s=10.0, seed=2).schedule(sessions(3000))
    t = np.array([s.arrival_s for s in schedule.sessions])
    first_half = ((t >= 0) & (t < 5)).sum()    # expected 50 * 25 / 10 = 125... integral: 62.5
    second_half = ((t >= 5) & (t < 10)).sum()  # 187.5
    after = ((t >= 10) & (t < 15)).sum()       # 250
    assert first_half == pytest.approx(62.5, rel=0.3)
    assert second_half == pytest.approx(187.5, rel=0.2)
    assert after == pytest.approx(250, rel=0.15)


def test_trace_times_scale_and_duration_cuts() -> None:
    schedule = TraceArrival(time_scale=0.5, duration_s=2.0).schedule(sessions(10, spacing=1.0))
    assert [s.arrival_s for s in schedule.sessions] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_shards_partition_the_schedule_without_moving_it() -> None:
    schedule = RateArrival(rate=5.0, seed=3).schedule(sessions(11))
    shards = [schedule.shard(i, 3) for i in range(3)]
    merged = sorted((s for sh in shards for s in sh.sessions), key=lambda s: s.arrival_s)
    assert merged == list(schedule.sessions)
    closed = ConcurrencyArrival(5, ramp_up_s=1.0).schedule(sessions(11))
    parts = [closed.shard(i, 2) for i in range(2)]
    assert [p.concurrency for p in parts] == [3, 2]
    assert sorted(t for p in parts for t in p.slot_open_s) == list(closed.slot_open_s)
    assert closed.slot_open_s == (0.0, 0.2, 0.4, 0.6, 0.8)
