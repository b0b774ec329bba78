"""The chart's `distill-qwen-32b` profile: a distilled R1 model on one GPU node, schema-valid
like the R1 profiles, serving what `r1serve deploy configs/distill-qwen-32b.yaml` serves, with
SGLang arguments SGLang's own parser accepts."""

from __future__ import annotations

import shlex

import pytest

from serve.config import R1ServeConfig
from serve.engine.sglang.profiles import get_profile
from serve.engine.sglang.server_args import build_server_args
from tests.helm.test_render import REPO, TOGGLES, _serve_app, _validate

PROFILE = "distill-qwen-32b"
WEIGHTS = ("weights.repoId=deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
           "weights.subPath=DeepSeek-R1-Distill-Qwen-32B", "weights.pvc.size=128Gi")


@pytest.mark.parametrize("toggle", ["defaults", "hostpath-initcontainer", "everything-off"])
def test_every_object_is_valid(template, crd_schemas, toggle: str) -> None:
    rendered = template(PROFILE, *WEIGHTS, *TOGGLES[toggle])
    assert rendered.rc == 0, rendered.stderr
    for obj in rendered.objects:
        _validate(obj, crd_schemas)


def test_serves_the_config_file_on_one_node_of_two_gpus(template) -> None:
    rs = template(PROFILE, *WEIGHTS).one("RayService")
    from_chart = R1ServeConfig.from_dict(_serve_app(rs)["args"])
    assert from_chart == R1ServeConfig.from_yaml(REPO / "configs" / f"{PROFILE}.yaml")
    (group,) = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    layout = get_profile(PROFILE).layout
    assert (group["numOfHosts"], group["rayStartParams"]["num-gpus"]) == (
        layout.nnodes, str(layout.gpus_per_node)) == (1, "2")
    assert from_chart.model.path == "/models/DeepSeek-R1-Distill-Qwen-32B"


def test_its_sglang_arguments_parse(template) -> None:
    try:
        from sglang.srt.server_args import ServerArgs
    except ImportError as e:
        pytest.skip(f"sglang 0.5.23 is not importable ({e})")
    import argparse

    config = R1ServeConfig.from_dict(
        _serve_app(template(PROFILE, *WEIGHTS).one("RayService"))["args"])
    (line,) = build_server_args(config).launch_commands()
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    parsed = ServerArgs.from_cli_args(parser.parse_args(shlex.split(line)[3:]))
    assert (parsed.tp_size, parsed.ep_size, parsed.attn_dp_size) == (2, 1, 1)
    assert parsed.served_model_name == "deepseek-r1-distill-qwen-32b"
