"""The token-load autoscaling policy on Serve contexts, as Serve calls it tick after tick."""

from __future__ import annotations

from ray.serve.config import AutoscalingConfig, AutoscalingContext

from serve.autoscaling import ScalingTargets, TokenLoadPolicy, autoscaling_config
from serve.autoscaling.decision import ScalingDecision

KV = 600_000.0


def replica(i: int, **over: float) -> dict[str, float]:
    """One replica's averaged metrics: a quarter full, calm, ready at time i."""
    m = {"running": 10.0, "waiting": 0.0, "max_running": 128.0, "kv_utilization": 0.25,
         "kv_tokens_total": KV, "queued_prefill_tokens": 0.0,
         "expected_remaining_decode_tokens": 30_000.0, "decode_bound_tokens": 300_000.0,
         "longest_decode_bound_tokens": 1_000.0, "generation_tokens_per_s": 300.0,
         "prefill_tokens_per_s": 2_000.0, "prefill_capacity_tokens_per_s": 20_000.0,
         "arrival_requests_per_s": 0.1, "arrival_prompt_tokens_per_s": 1_000.0,
         "arrival_decode_tokens_per_s": 400.0, "itl_mean_s": 0.03, "ttft_p90_s": 0.5,
         "ttft_p99_s": 1.0, "startup_s": 100.0, "ready_at": float(i)}
    return {**m, **over}


def ctx(per_replica: list[dict[str, float]], now: float, target: int | None = None,
        state: dict | None = None, total: float | None = None,
        min_replicas: int = 1) -> AutoscalingContext:
    ids = [f"r{i}" for i in range(len(per_replica))]
    names = {k for m in per_replica for k in m}
    running = sum(m.get("running", 0) + m.get("waiting", 0) for m in per_replica)
    return AutoscalingContext(
        deployment_id=None, deployment_name="EngineDeployment", app_name="r1serve",
        current_num_replicas=len(ids), target_num_replicas=target or len(ids),
        running_replicas=ids, total_num_requests=running if total is None else total,
        total_queued_requests=0.0,
        aggregated_metrics={k: {i: m[k] for i, m in zip(ids, per_replica, strict=True) if k in m}
                            for k in names},
        raw_metrics={}, capacity_adjusted_min_replicas=min_replicas,
        capacity_adjusted_max_replicas=64, policy_state=state or {}, last_scale_up_time=None,
        last_scale_down_time=None, current_time=now, config=None)


def run(policy: TokenLoadPolicy, fleet, seconds: float, start: float = 0.0,
        step: float = 10.0) -> ScalingDecision:
    """Call the policy every `step` seconds with `fleet(now)`, carrying policy_state; the
    target follows the decision as Serve's would with no delays."""
    state: dict = {}
    now = start
    target = None
    while now <= start + seconds:
        replicas = fleet(now)
        n, state = policy(ctx(replicas, now, target=target, state=state))
        target = max(len(replicas), n)
        now += step
    return ScalingDecision.from_dict(state["r1serve"])


def policy(**targets: float) -> TokenLoadPolicy:
    return TokenLoadPolicy(**{"cold_start_s": 300.0, "downscale_delay_s": 300.0, **targets})


def test_scales_up_on_kv_pressure():
    d = run(policy(), lambda now: [replica(i, kv_utilization=0.95) for i in range(4)], 60)
    # 4 x 0.95 of the pool in use, planned at 0.75 of it: at least 6 replicas
    assert d.demand["kv"] > 5 and d.replicas >= 6


def test_scales_up_on_prefill_work():
    # each replica prefills 18K tokens/s of the 20K it can: 0.9 of it, planned at 0.7
    d = run(policy(), lambda now: [replica(i, prefill_tokens_per_s=18_000.0)
                                   for i in range(2)], 60)
    assert abs(d.demand["prefill"] - 2 * 0.9 / 0.7) < 1e-9 and d.replicas == 3


def test_expected_decode_not_the_max_tokens_bound_decides():
    """A fleet of R1 streams that each may take 32K tokens but are expected to take ~3K:
    the bound is ten times the expectation and must not size the fleet."""
    calm = [replica(i, running=13.0, decode_bound_tokens=13 * 32_000.0,
                    expected_remaining_decode_tokens=13 * 3_000.0) for i in range(4)]
    d = run(policy(), lambda now: calm, 120)
    assert d.replicas <= 4


def test_ttft_missing_its_objective_lowers_the_planned_kv_share():
    """At 60% KV, a fifth of first tokens take over 5 s, all for queueing (twice what the p90
    objective allows): the policy plans KV less full, so the same load needs more replicas."""
    slow = {"first_tokens_per_s": 2.0, "ttft_over_5s_per_s": 0.4,
            "ttft_over_5s_waiting_per_s": 0.4}
    fine = {"first_tokens_per_s": 2.0}
    early = run(policy(), lambda now: [replica(i, kv_utilization=0.6, **fine)
                                       for i in range(4)], 1200)
    assert early.kv_share == 0.75 and early.replicas == 4
    late = run(policy(), lambda now: [replica(i, kv_utilization=0.6, **slow)
                                      for i in range(4)], 1200)
    assert late.kv_share < 0.6 and late.replicas == 5


def test_holds_steady_at_target():
    d = run(policy(), lambda now: [replica(i, kv_utilization=0.6) for i in range(4)], 900)
    assert d.replicas == 4


def test_a_rising_trend_scales_up_before_the_load_arrives():
    """Arrivals double every 20 minutes; the KV in use has not yet followed. The policy sizes
    for the load one cold start (330 s with Serve's delay) ahead, so it asks for more than
    today's KV needs."""
    def fleet(now: float) -> list[dict[str, float]]:
        rate = 1.0 + now / 1200.0
        return [replica(i, kv_utilization=0.7, arrival_requests_per_s=0.1 * rate,
                        arrival_prompt_tokens_per_s=1000.0 * rate,
                        arrival_decode_tokens_per_s=400.0 * rate) for i in range(4)]
    d = run(policy(), fleet, 900)
    assert abs(d.growth - (1.0 + 1230 / 1200) / (1.0 + 900 / 1200)) < 0.01
    assert d.replicas > 4 >= d.demand["kv"]


def test_bursty_arrivals_keep_headroom_and_smooth_ones_none():
    def fleet(bursts: bool):
        def replicas(now: float) -> list[dict[str, float]]:
            burst = 3.0 if bursts and int(now / 60) % 4 == 0 else 1.0  # a minute in four
            return [replica(i, kv_utilization=0.6, arrival_requests_per_s=0.1 * burst,
                            arrival_prompt_tokens_per_s=1000.0 * burst) for i in range(4)]
        return replicas
    smooth, bursty = run(policy(), fleet(False), 3000), run(policy(), fleet(True), 3000)
    assert smooth.headroom < 1e-9 and smooth.replicas == 4
    assert bursty.headroom > 0.1 and bursty.replicas > 4


def test_scale_down_waits_for_the_delay_then_drains_the_newest_replica():
    p = policy(downscale_delay_s=300.0, drain_deadline_s=600.0)
    idle = [replica(i, kv_utilization=0.05, running=1.0) for i in range(4)]
    early = run(p, lambda now: idle, 200)
    assert early.replicas == 4 and early.draining == ()
    later = run(policy(downscale_delay_s=300.0), lambda now: idle, 400)
    # The load needs one replica: the three newest drain together; r3, the newest, goes first
    assert later.replicas == 3 and later.draining == ("r3", "r2", "r1")


def test_no_scale_down_while_the_newest_replica_could_outlast_the_drain_deadline():
    """Little load, but the newest replica holds a stream that may still run 32K tokens at
    50 ms each (27 minutes): it is drained (sent nothing new) but not removed."""
    fleet = [replica(i, kv_utilization=0.05, running=1.0) for i in range(3)] + [
        replica(3, kv_utilization=0.05, running=1.0, longest_decode_bound_tokens=32_000.0,
                itl_mean_s=0.05)]
    d = run(policy(drain_deadline_s=600.0), lambda now: fleet, 900)
    assert d.replicas == 4 and d.draining[0] == "r3"
    assert "past the 600 s drain deadline" in d.reason


def test_a_replica_still_starting_is_cancelled_first():
    idle = [replica(i, kv_utilization=0.05, running=1.0) for i in range(2)]
    p = policy(downscale_delay_s=0.0)
    n, state = p(ctx(idle, 0.0, target=4))
    assert n == 3 and ScalingDecision.from_dict(state["r1serve"]).draining == ()


def test_never_below_min_replicas_and_to_zero_when_allowed():
    idle = [replica(0, kv_utilization=0.0, running=0.0, arrival_requests_per_s=0.0,
                    arrival_prompt_tokens_per_s=0.0, arrival_decode_tokens_per_s=0.0,
                    prefill_tokens_per_s=0.0, longest_decode_bound_tokens=0.0)]
    p = policy(downscale_delay_s=0.0)
    assert p(ctx(idle, 0.0, total=0.0, min_replicas=1))[0] == 1
    assert p(ctx(idle, 10.0, total=0.0, min_replicas=0))[0] == 0


def test_the_cold_start_is_measured_from_the_policys_own_scale_up():
    p = policy(cold_start_s=300.0)
    two = [replica(i) for i in range(2)]
    p(ctx(two, 0.0, target=3))  # Serve's target is 3, two serve
    p(ctx(two, 60.0, target=3))
    n, state = p(ctx(two + [replica(2)], 130.0, target=3))  # the third serves 130 s later
    d = ScalingDecision.from_dict(state["r1serve"])
    assert d.cold_start_measured and d.cold_start_s == 130.0


def test_holds_the_target_before_any_metrics():
    n, state = TokenLoadPolicy()(ctx([], 0.0, target=3))
    assert n == 3 and state["r1serve"]["reason"] == "no reports yet"


def test_autoscaling_config_is_accepted_by_serve_and_delays_scale_down_in_the_policy():
    config = AutoscalingConfig(**autoscaling_config(
        ScalingTargets(), min_replicas=0, max_replicas=8, downscale_delay_s=450.0,
        drain_deadline_s=900.0))
    assert config.policy.policy_function == "serve.autoscaling.policy:TokenLoadPolicy"
    kwargs = config.policy.policy_kwargs
    assert kwargs["downscale_delay_s"] == 450.0 and kwargs["drain_deadline_s"] == 900.0
    assert config.downscale_delay_s == 0.0 and config.min_replicas == 0
    TokenLoadPolicy(**kwargs)  # Serve builds the policy from exactly these


def test_from_a_cold_start_the_arrivals_kv_sizes_the_fleet_before_the_kv_in_use_does():
    """Streams run for minutes: a fleet started empty holds a tenth of its steady KV after a
    minute. The arrivals' KV token-steps (Little's law, at the replicas' ITL) show the KV they
    will hold, so the policy does not take the empty caches for spare capacity."""
    steady_kv = 4 * 0.6 * KV  # what the arrivals will hold: 60% of four pools
    cold = [replica(i, kv_utilization=0.06, itl_mean_s=0.05,
                    arrival_kv_token_steps_per_s=steady_kv / 4 / 0.05) for i in range(4)]
    d = run(policy(), lambda now: cold, 900)
    assert abs(d.demand["kv"] - 4 * 0.6 / 0.75) < 1e-6 and d.replicas == 4


def test_a_fluctuation_within_the_margin_does_not_restart_the_wait_for_spare_capacity():
    p = policy(downscale_delay_s=300.0)
    low = [replica(i, kv_utilization=0.1) for i in range(4)]  # needs one replica
    margin = [replica(i, kv_utilization=0.52) for i in range(4)]  # needs 2.77: under the margin
    d = run(p, lambda now: margin if 100 <= now < 200 else low, 400)
    assert d.replicas == 3  # the wait began at 0 and ran through the fluctuation
