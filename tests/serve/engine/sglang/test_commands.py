"""`r1serve sglang-args`: one launch command per node."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from serve.engine.sglang.commands import add_sglang_args_parser


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="r1serve")
    add_sglang_args_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["sglang-args", *argv])
    assert ns.func(ns) == 0
    return capsys.readouterr().out.splitlines()


def test_single_node_profile_prints_one_command(capsys) -> None:
    lines = _run(["--profile", "h200x8"], capsys)
    assert len(lines) == 1
    assert lines[0].startswith("python -m sglang.launch_server --model-path "
                               "deepseek-ai/DeepSeek-R1 --tp-size 8 ")
    assert "--dist-init-addr" not in lines[0] and "--host 0.0.0.0 --port 30000" in lines[0]


def test_wide_ep_prints_four_nodes_with_placeholder_address(capsys) -> None:
    commands = [line for line in _run(["--profile", "h800x32-wide-ep"], capsys)
                if not line.startswith("#")]
    assert len(commands) == 4
    for rank, line in enumerate(commands):
        assert "--nnodes 4 " in line and f"--node-rank {rank} " in line
        assert "--dist-init-addr $HEAD_IP:5000" in line
        assert "--attn-dp-size 32 " in line and "--moe-a2a-backend deepep" in line
        assert "--enable-eplb" in line and "--ep-num-redundant-experts 32" in line


def test_config_and_address_apply(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "r1.yaml"
    cfg.write_text("model: {path: /models/r1, backend: sglang, context_length: 65536}\n"
                   "engine: {nodes_per_replica: 2, devices_per_node: 8,\n"
                   "         backend_args: {kv_cache_dtype: fp8_e4m3}}\n")
    lines = _run(["--profile", "h100x16", "--config", str(cfg),
                  "--dist-init-addr", "10.0.0.7:6000"], capsys)
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 2
    for line in commands:
        assert "--model-path /models/r1 " in line and "--context-length 65536" in line
        assert "--kv-cache-dtype fp8_e4m3" in line and "--dist-init-addr 10.0.0.7:6000" in line


@pytest.mark.parametrize(("profile", "model", "tp"), [
    ("distill-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B", 1),
    ("distill-qwen-32b", "DeepSeek-R1-Distill-Qwen-32B", 2),
    ("distill-llama-70b", "DeepSeek-R1-Distill-Llama-70B", 4)])
def test_distill_profiles_launch_their_own_model(profile: str, model: str, tp: int,
                                                 capsys) -> None:
    """With no config naming a model, a distill profile launches the checkpoint it is sized
    for, parsed by SGLang's own parser when it is installed."""
    (line,) = _run(["--profile", profile], capsys)
    assert line.startswith(f"python -m sglang.launch_server --model-path deepseek-ai/{model} "
                           f"--tp-size {tp} --nnodes 1 ")
    try:
        from sglang.srt.server_args import ServerArgs
    except ImportError:
        return
    import shlex

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    parsed = ServerArgs.from_cli_args(parser.parse_args(shlex.split(line)[3:]))
    assert (parsed.model_path, parsed.tp_size, parsed.ep_size) == (f"deepseek-ai/{model}", tp, 1)
    assert parsed.reasoning_parser is None
