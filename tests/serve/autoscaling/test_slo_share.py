"""The KV share the fleet may fill while TTFT keeps its objectives, steered by its misses."""

from __future__ import annotations

from serve.autoscaling.slo_share import Misses, SloShare


def feed(s: SloShare, seconds: float, queued_p99: float, slow_p99: float = 0.0,
         start: float = 0.0, starting: bool = False, overrun: bool = False) -> float:
    """100 first tokens every 10 s; the shares over the p99 objective that queueing made
    late (`queued_p99`) and that were late on their own (`slow_p99`)."""
    t = start
    while t < start + seconds:
        late = 100.0 * (queued_p99 + slow_p99)
        s.learn(t, overrun, 100.0, Misses(over_p99=late, waiting_p99=100.0 * queued_p99),
                starting)
        t += 10.0
    return t


def test_the_configured_ceiling_while_ttft_keeps_its_objectives():
    s = SloShare(ceiling=0.75)
    feed(s, 3600, 0.005)  # two thirds of the aim (three quarters of 1%)
    assert s.value == 0.75


def test_queueing_misses_over_the_aim_lower_the_plan_in_proportion():
    slight, heavy = SloShare(ceiling=0.75), SloShare(ceiling=0.75)
    feed(slight, 600, 0.01)  # 1.33x the aim
    feed(heavy, 600, 0.02)  # 2.67x, counted as 2 (the fastest fall)
    assert heavy.value < slight.value < 0.75
    assert (0.75 - heavy.value) > 2.5 * (0.75 - slight.value)


def test_misses_no_capacity_cures_are_not_chased():
    """0.6% of prompts are late on their own (their prefill outlasts the objective); the
    queueing misses are then aimed at three quarters of the 0.4% left."""
    chased = SloShare(ceiling=0.75)
    feed(chased, 1800, queued_p99=0.004, slow_p99=0.006)
    assert chased.value < 0.75  # 0.4% queued against an aim of 0.3%
    fine = SloShare(ceiling=0.75)
    feed(fine, 1800, queued_p99=0.002, slow_p99=0.006)
    assert fine.value == 0.75
    out_of_reach = SloShare(ceiling=0.75)  # prompts alone miss 3%: held to a quarter of 1%
    feed(out_of_reach, 1800, queued_p99=0.001, slow_p99=0.03)
    assert out_of_reach.value == 0.75


def test_the_plan_rises_back_at_half_the_pace_once_ttft_is_met():
    s = SloShare(ceiling=0.75)
    t = feed(s, 900, 0.03)
    t = feed(s, 1800, 0.0, start=t)  # the misses leave the half-hour window
    low = s.value
    feed(s, 900, 0.0, start=t)
    assert low < s.value <= 0.75


def test_no_further_fall_while_the_replicas_asked_for_are_starting():
    s = SloShare(ceiling=0.75)
    t = feed(s, 300, 0.05)
    held = s.value
    feed(s, 300, 0.05, start=t, starting=True)
    assert s.value == held


def test_nothing_is_judged_on_a_few_first_tokens():
    s = SloShare(ceiling=0.75, min_first_tokens=200.0)
    s.learn(0.0, False, 50.0, Misses(50.0, 50.0, 50.0, 50.0))
    s.learn(10.0, False, 50.0, Misses(50.0, 50.0, 50.0, 50.0))
    assert s.value == 0.75 and s.off_objective() is None


def test_misses_in_an_overrun_and_its_backlog_do_not_judge_the_plan():
    s = SloShare(ceiling=0.6)
    t = feed(s, 300, 0.05, overrun=True)  # a burst needs more replicas than serve
    t = feed(s, 1790, 0.05, start=t)  # its backlog's first tokens still come late
    assert s.value == 0.6
    feed(s, 1200, 0.05, start=t)  # misses a whole window after it judge the plan
    assert s.value < 0.6
