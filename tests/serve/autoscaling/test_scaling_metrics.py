"""The autoscaler's decision on `/metrics`: gauges read from a (fake) scaling board at scrape
time, briefly cached, and absent when there is no decision."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serve.api.metrics import ApiMetrics
from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.scaling_metrics import ScalingCollector, scaling_registry

DECISION = ScalingDecision(
    at=1_700_000_000.0, replicas=4, running=3, target=3,
    demand={"kv": 2.5, "prefill": 1.2, "decode": 3.1}, needed=3.6, growth=1.1, headroom=0.05,
    arrival_tokens_per_s=12_000.0, forecast_tokens_per_s=13_200.0, cold_start_s=420.0,
    cold_start_measured=True, kv_share=0.6, draining=(),
    reason="adding for the load one cold start ahead")


class FakeBoard:
    def __init__(self, decision: ScalingDecision | None) -> None:
        self.decision = decision
        self.reads = 0
        self.fail = False

    def read(self) -> ScalingDecision | None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("GCS unreachable")
        return self.decision


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: ScalingCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect() for s in family.samples}


def test_every_gauge_reads_the_decision() -> None:
    samples = scrape(ScalingCollector(FakeBoard(DECISION).read))
    assert samples == {
        ("r1serve_autoscaling_desired_replicas", ()): 4,
        ("r1serve_autoscaling_running_replicas", ()): 3,
        ("r1serve_autoscaling_target_replicas", ()): 3,
        ("r1serve_autoscaling_needed_replicas", ()): 3.6,
        ("r1serve_autoscaling_arrival_tokens_per_second", ()): 12_000.0,
        ("r1serve_autoscaling_forecast_tokens_per_second", ()): 13_200.0,
        ("r1serve_autoscaling_growth_ratio", ()): 1.1,
        ("r1serve_autoscaling_headroom_ratio", ()): 0.05,
        ("r1serve_autoscaling_cold_start_seconds", ()): 420.0,
        ("r1serve_autoscaling_cold_start_measured", ()): 1.0,
        ("r1serve_autoscaling_kv_share_ratio", ()): 0.6,
        ("r1serve_autoscaling_draining", ()): 0.0,
        ("r1serve_autoscaling_decision_timestamp_seconds", ()): 1_700_000_000.0,
        ("r1serve_autoscaling_demand_replicas", (("signal", "kv"),)): 2.5,
        ("r1serve_autoscaling_demand_replicas", (("signal", "prefill"),)): 1.2,
        ("r1serve_autoscaling_demand_replicas", (("signal", "decode"),)): 3.1,
    }


def test_a_draining_replica_and_the_planned_kv_share_show() -> None:
    d = replace(DECISION, draining=("abc123",), kv_share=0.55)
    samples = scrape(ScalingCollector(FakeBoard(d).read))
    assert samples[("r1serve_autoscaling_draining", ())] == 1.0
    assert samples[("r1serve_autoscaling_kv_share_ratio", ())] == 0.55


def test_no_decision_means_no_gauges_not_zeros() -> None:
    assert scrape(ScalingCollector(FakeBoard(None).read)) == {}
    text = generate_latest(scaling_registry(FakeBoard(None).read)).decode()
    assert "r1serve_autoscaling" not in text


def test_before_any_report_only_the_decision_shows_not_the_plan() -> None:
    waiting = ScalingDecision(at=1_700_000_000.0, replicas=1, running=0, target=1,
                              reason="no reports yet")
    assert set(scrape(ScalingCollector(FakeBoard(waiting).read))) == {
        (f"r1serve_autoscaling_{name}", ()) for name in (
            "desired_replicas", "running_replicas", "target_replicas", "draining",
            "decision_timestamp_seconds")}


def test_reads_are_cached_briefly_and_a_failed_read_hides_the_gauges(caplog) -> None:
    board, clock = FakeBoard(DECISION), Clock()
    collector = ScalingCollector(board.read, cache_s=5.0, clock=clock)
    scrape(collector)
    clock.now = 4.0
    scrape(collector)
    assert board.reads == 1
    board.fail = True
    with caplog.at_level("WARNING", logger="serve.autoscaling.scaling_metrics"):
        for step in (6.0, 12.0, 18.0):
            clock.now = step
            assert scrape(collector) == {}
    assert board.reads == 4 and len(caplog.records) == 1
    board.fail = False
    clock.now = 24.0
    assert scrape(collector)[("r1serve_autoscaling_desired_replicas", ())] == 4


def test_the_ingress_metrics_carry_the_gauges_with_help_texts() -> None:
    class NoReplicas:
        async def replica_stats(self):
            return {}

    metrics = ApiMetrics([scaling_registry(FakeBoard(DECISION).read)])
    text = asyncio.run(metrics.render(NoReplicas())).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "r1serve_api_requests" in families  # the ingress's own come first
    ours = {n: f for n, f in families.items() if n.startswith("r1serve_autoscaling_")}
    assert len(ours) == 14
    assert all(f.type == "gauge" and f.documentation for f in ours.values())
