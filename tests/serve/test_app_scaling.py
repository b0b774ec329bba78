"""The engine deployment's scaling options, as `build_app` gives them to Serve."""

from __future__ import annotations

from serve.app import _scaling, token_load_autoscaled
from serve.autoscaling.targets import POLICY_PATH
from serve.config import R1ServeConfig


def scaling(autoscaling: dict, drain_s: float = 900.0) -> dict:
    return _scaling(R1ServeConfig.from_dict({"autoscaling": autoscaling,
                                             "drain": {"deadline_s": drain_s}}))


def test_token_load_gets_the_delays_the_deadline_and_the_targets():
    config = scaling({"min_replicas": 1, "max_replicas": 4, "upscale_delay_s": 45,
                      "downscale_delay_s": 900, "look_back_period_s": 20,
                      "targets": {"cold_start_s": 600, "kv_utilization": 0.8}})
    auto = config["autoscaling_config"]
    kwargs = auto["policy"]["policy_kwargs"]
    assert auto["policy"]["policy_function"] == POLICY_PATH
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 4)
    assert (auto["upscale_delay_s"], auto["look_back_period_s"]) == (45, 20)
    # The policy drains before Serve removes a replica, so it times scale-down itself.
    assert auto["downscale_delay_s"] == 0
    assert (kwargs["upscale_delay_s"], kwargs["downscale_delay_s"],
            kwargs["drain_deadline_s"]) == (45, 900, 900)
    assert (kwargs["cold_start_s"], kwargs["kv_utilization"]) == (600, 0.8)


def test_scale_from_zero_is_left_to_serve():
    auto = scaling({"min_replicas": 0, "max_replicas": 2})["autoscaling_config"]
    assert auto["min_replicas"] == 0
    assert auto["downscale_to_zero_delay_s"] == 600  # the config's downscale delay


def test_serve_s_default_policy_keeps_its_own_delays():
    auto = scaling({"policy": "ongoing_requests", "min_replicas": 1, "max_replicas": 3,
                    "downscale_delay_s": 120})["autoscaling_config"]
    assert "policy" not in auto
    assert (auto["downscale_delay_s"], auto["target_ongoing_requests"]) == (120, 32)


def test_only_an_autoscaled_token_load_deployment_posts_decisions():
    def config(**autoscaling) -> R1ServeConfig:
        return R1ServeConfig.from_dict({"autoscaling": autoscaling})

    assert token_load_autoscaled(config(min_replicas=1, max_replicas=2))
    assert not token_load_autoscaled(config(min_replicas=2, max_replicas=2))
    assert not token_load_autoscaled(config(policy="ongoing_requests", max_replicas=2))
    assert scaling({"min_replicas": 2, "max_replicas": 2}) == {"num_replicas": 2}
