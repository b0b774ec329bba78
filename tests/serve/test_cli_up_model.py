"""`r1serve up --model PATH` with a distilled R1 checkpoint: the configuration it runs and the
expert-parallel settings it refuses before Ray starts."""

from __future__ import annotations

import pytest

from serve.cli import main, up_config
from serve.errors import ConfigError


def test_a_dense_model_without_a_config_runs_as_one_process(tiny_qwen2_dir):
    config = up_config(None, str(tiny_qwen2_dir))
    assert config.model.path == str(tiny_qwen2_dir) and config.model.backend == "reference"
    assert config.engine.ep_size == 1 and config.engine.nodes_per_replica == 1
    assert config.model.served_name == tiny_qwen2_dir.name


def test_r1_keeps_the_local_default_expert_parallelism(tiny_fp32_dir):
    config = up_config(None, str(tiny_fp32_dir))
    assert config.engine.ep_size == 2 and config.model.served_name == "deepseek-r1"


def test_expert_parallel_config_for_a_dense_model_is_refused_before_ray(tiny_llama_dir,
                                                                        tmp_path, capsys):
    cfg = tmp_path / "ep.yaml"
    cfg.write_text("engine: {ep_size: 2, devices_per_node: 2}\n")
    with pytest.raises(ConfigError, match=r"engine\.ep_size=2 .*dense llama"):
        up_config(str(cfg), str(tiny_llama_dir))
    assert main(["up", "--config", str(cfg), "--model", str(tiny_llama_dir)]) == 2
    assert "set engine.ep_size to 1" in capsys.readouterr().err
