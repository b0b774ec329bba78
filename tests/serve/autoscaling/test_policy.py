"""The token-load autoscaling policy on synthetic Serve contexts."""

from __future__ import annotations

from ray.serve.config import AutoscalingConfig, AutoscalingContext

from serve.autoscaling import ScalingTargets, TokenLoadPolicy, autoscaling_config

TARGETS = ScalingTargets(kv_utilization=0.7, queued_prefill_tokens=32768, decode_tokens=400_000,
                         ttft_s=5.0, max_drain_s=300.0, decode_tokens_per_s=2000.0)


def ctx(per_replica: list[dict[str, float]], target: int | None = None) -> AutoscalingContext:
    ids = [f"r{i}" for i in range(len(per_replica))]
    names = {k for m in per_replica for k in m}
    return AutoscalingContext(
        deployment_id=None, deployment_name="EngineDeployment", app_name="r1serve",
        current_num_replicas=len(ids), target_num_replicas=target or len(ids),
        running_replicas=ids, total_num_requests=0.0, total_queued_requests=0.0,
        aggregated_metrics={k: {i: m[k] for i, m in zip(ids, per_replica, strict=True) if k in m}
                            for k in names},
        raw_metrics={}, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=16,
        policy_state={}, last_scale_up_time=None, last_scale_down_time=None, current_time=0.0,
        config=None)


def quiet(**over: float) -> dict[str, float]:
    m = {"kv_utilization": 0.1, "queued_prefill_tokens": 0.0,
         "expected_remaining_decode_tokens": 1000.0, "generation_tokens_per_s": 2000.0}
    return {**m, **over}


def decide(per_replica: list[dict[str, float]]) -> int:
    return TokenLoadPolicy(**TARGETS.__dict__)(ctx(per_replica))[0]


def test_scales_up_on_kv_pressure():
    assert decide([quiet(kv_utilization=0.95)] * 4) >= 6


def test_scales_up_on_queued_prefill_tokens():
    assert decide([quiet(queued_prefill_tokens=100_000)] * 2) >= 7


def test_scales_up_when_ttft_misses_its_target():
    assert decide([quiet(ttft_p90_s=12.0)] * 2) >= 4


def test_holds_steady_at_target():
    assert decide([quiet(kv_utilization=0.6)] * 4) == 4


def test_scales_down_when_idle_one_at_a_time():
    assert decide([quiet()] * 4) == 3


def test_no_scale_down_while_long_streams_run():
    # Little load overall, but one replica still owes 20 minutes of reasoning at its rate.
    busy = quiet(expected_remaining_decode_tokens=1_200_000.0, generation_tokens_per_s=1000.0)
    assert decide([quiet(), quiet(), quiet(), busy]) == 4


def test_holds_the_target_before_any_metrics():
    assert TokenLoadPolicy()(ctx([], target=3))[0] == 3


def test_autoscaling_config_is_accepted_by_serve():
    config = AutoscalingConfig(**autoscaling_config(TARGETS, min_replicas=1, max_replicas=8))
    assert config.policy.policy_function == "serve.autoscaling.policy:TokenLoadPolicy"
    assert config.policy.policy_kwargs["ttft_s"] == 5.0
