"""The one configuration schema: examples load, typos and contradictions are named errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from serve.autoscaling.targets import DERIVED, ScalingTargets
from serve.config import R1ServeConfig, ScalingTargetsSection
from serve.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_loads(path):
    config = R1ServeConfig.from_yaml(path)
    assert config.model.served_name.startswith("deepseek-r1")  # or a distill's name


def test_the_embedded_default_is_configs_local_tiny():
    local = next(p for p in CONFIGS if p.name == "local-tiny.yaml")
    default = R1ServeConfig.local_default()
    assert R1ServeConfig.from_yaml(local) == default
    assert default.engine.ep_size == 2 and default.api.port == 8000
    assert default.api.default_temperature == 0.6 and default.api.default_top_p == 0.95


@pytest.mark.parametrize("data, message", [
    ({"engine": {"ep_sise": 2}}, "engine.ep_sise: Extra inputs are not permitted"),
    ({"api": {"port": 0}}, "api.port"),
    ({"engine": {"max_running": 600, "max_batched_tokens": 512}}, "max_running"),
    ({"engine": {"ep_size": 3, "nodes_per_replica": 2}}, "multiple of"),
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas"),
    ({"router": {"knobs": {"cache_hit_wieght": 2}}}, "unknown router knob"),
    ({"autoscaling": {"targets": {"kv_utilisation": 0.5}}}, "unknown scaling target"),
    ({"autoscaling": {"targets": {"kv_utilization": 1.5}}}, "targets.kv_utilization"),
    ({"autoscaling": {"targets": {"cold_start_s": 0}}}, "targets.cold_start_s"),
    ({"autoscaling": {"targets": {"downscale_delay_s": 60}}},
     "set autoscaling.downscale_delay_s, not targets.downscale_delay_s"),
    ({"autoscaling": {"targets": {"upscale_delay_s": 60}}},
     "set autoscaling.upscale_delay_s, not targets.upscale_delay_s"),
    ({"autoscaling": {"targets": {"drain_deadline_s": 60}}},
     "set drain.deadline_s, not targets.drain_deadline_s"),
    ({"model": {"backend": "vllm"}}, "model.backend"),
])
def test_bad_config_names_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        R1ServeConfig.from_dict(data)


def test_api_keys_come_from_env_and_file(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text("k-file-1\n\nk-file-2\n")
    monkeypatch.setenv("R1_TEST_KEYS", "k-env-1, k-env-2")
    config = R1ServeConfig.from_dict(
        {"api": {"api_keys_env": "R1_TEST_KEYS", "api_keys_file": str(keys)}})
    assert config.api.api_keys() == {"k-env-1", "k-env-2", "k-file-1", "k-file-2"}
    missing = R1ServeConfig.from_dict({"api": {"api_keys_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="api_keys_file"):
        missing.api.api_keys()


def test_unreadable_yaml_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        R1ServeConfig.from_yaml(bad)


def test_every_scaling_target_is_a_config_field_but_the_derived_ones():
    """A knob added to ScalingTargets must be added to the config schema too (or to DERIVED,
    with the config field it comes from)."""
    knobs = {f.name for f in fields(ScalingTargets)}
    assert set(ScalingTargetsSection.model_fields) == knobs - set(DERIVED)
    assert ScalingTargetsSection().scaling_targets() == ScalingTargets()
    assert all(f.description for f in ScalingTargetsSection.model_fields.values())


def test_scaling_targets_reach_the_policy_s_dataclass():
    config = R1ServeConfig.from_dict(
        {"autoscaling": {"targets": {"ttft_p90_s": 3.0, "burst_z": 0}}})
    targets = config.autoscaling.targets.scaling_targets()
    assert (targets.ttft_p90_s, targets.burst_z, targets.itl_s) == (3.0, 0.0, 0.2)


def test_min_replicas_zero_is_accepted():
    assert R1ServeConfig.from_dict({"autoscaling": {"min_replicas": 0}}).autoscaling \
        .min_replicas == 0
