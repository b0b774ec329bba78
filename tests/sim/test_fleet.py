"""The fleet simulator: Serve's scaling around a policy, on small workloads."""

from __future__ import annotations

from dataclasses import replace

from sim.core_router import CoreSimRouter
from sim.fleet import Fleet, FleetConfig, FleetView, ScaleDecision
from sim.replica_model import ReplicaSpec, SimRequest
from sim.simulate import Job, Setup, Slo, Workload, run
from sim.workload import synthetic_reasoning

CFG = FleetConfig(spec=ReplicaSpec(cold_start_s=60.0), initial_replicas=1, max_replicas=6)


def small() -> list[SimRequest]:
    return synthetic_reasoning(sessions=40, session_rate_per_s=0.2, seed=3)


class Scripted:
    """A policy that asks for what a script says, and records what the fleet showed it."""

    def __init__(self, script, draining=frozenset()) -> None:
        self.script, self.draining, self.views = script, draining, []

    def decide(self, view: FleetView, now: float) -> ScaleDecision:
        self.views.append((now, view))
        return ScaleDecision(self.script(now, view), self.draining)


class Watching(CoreSimRouter):
    def __init__(self) -> None:
        super().__init__()
        self.drained: list[frozenset[int]] = []

    def set_draining(self, replicas: frozenset[int], now: float) -> None:
        self.drained.append(replicas)
        super().set_draining(replicas, now)


def test_every_request_finishes_and_the_run_is_deterministic():
    setup = Setup(ReplicaSpec(cold_start_s=60.0), initial_replicas=1, max_replicas=6,
                  target_ongoing_requests=8.0)
    work = Workload("synthetic", sessions=40, session_rate=0.2)
    jobs = [Job(work, setup, name, 3, Slo()) for name in ("ours", "serve-default", "fixed-3")]
    a, b = [run(j) for j in jobs], [run(j) for j in jobs]
    assert a == b
    for s in a:
        assert s.requests == len(small()) and s.replica_hours > 0 and s.cut == 0


def test_fixed_fleet_never_changes_size():
    result = Fleet(small(), CoreSimRouter(), replace(CFG, initial_replicas=2),
                   Scripted(lambda now, view: 2)).run()
    assert {n for _, n in result.timeline} == {2}
    assert all(r.finished_at is not None for r in result.requests)


def test_a_replica_serves_one_cold_start_after_it_is_asked_for():
    policy = Scripted(lambda now, view: 2)
    Fleet(small(), CoreSimRouter(), replace(CFG, upscale_delay_s=0.0), policy).run()
    asked = policy.views[0][0]  # the first decision asks for a second replica
    assert policy.views[1][1].target == 2
    assert min(now for now, v in policy.views if v.serving == 2) - asked == 60.0


def test_from_zero_replicas_the_first_request_starts_one_at_once():
    reqs = small()[:5]
    policy = Scripted(lambda now, view: 0)
    cfg = replace(CFG, initial_replicas=0, min_replicas=0, upscale_delay_s=300.0)
    result = Fleet(reqs, CoreSimRouter(), cfg, policy).run()
    first = reqs[0]
    # held at the handle for the cold start, not dropped, despite a 300 s upscale delay
    assert first.first_token_at is not None and 60.0 <= first.ttft < 75.0
    assert all(r.finished_at is not None and not r.cut for r in result.requests)


def test_draining_replicas_are_told_to_the_router_and_get_no_new_requests():
    reqs = small()
    router = Watching()
    cfg = replace(CFG, initial_replicas=2)
    Fleet(reqs, router, cfg, Scripted(lambda now, view: 2, frozenset({1}))).run()
    assert router.drained[0] == frozenset({1})
    routed_late = [r for r in reqs if r.arrival > 30.0]  # after the first decision
    assert routed_late and all(r.replica == 0 for r in routed_late)


def test_a_removed_replica_finishes_its_streams_until_the_deadline_then_cuts_them():
    reqs = [SimRequest(rid=i, arrival=float(i), prompt_tokens=1000, output_tokens=100_000,
                       blocks=(i,), max_tokens=100_000) for i in range(4)]
    cfg = replace(CFG, initial_replicas=2, downscale_delay_s=0.0, drain_deadline_s=100.0)
    result = Fleet(reqs, CoreSimRouter(), cfg, Scripted(lambda now, view: 1)).run()
    cut = [r for r in result.requests if r.cut]
    assert cut and all(r.replica == 1 and r.finished_at == 110.0 for r in cut)
    assert all(not r.cut for r in result.requests if r.replica == 0)


def test_the_worst_hour_is_the_lowest_hourly_attainment():
    from sim.simulate import worst_hour

    reqs = [SimRequest(rid=i, arrival=float(i * 36), prompt_tokens=1, output_tokens=1,
                       blocks=()) for i in range(300)]  # 100 an hour for three hours
    ok = [not (100 <= i < 110) for i in range(300)]  # ten misses, all in the second hour
    assert worst_hour(reqs, ok) == 0.9
    assert worst_hour(reqs[:50], ok[:50]) == 1.0  # an hour of 50 requests tells nothing
