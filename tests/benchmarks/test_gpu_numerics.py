"""The torch-only GPU check (`benchmarks/gpu_numerics.py`): CPU against CPU here, CUDA against
the CPU where there is a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_numerics


def _line(capsys: pytest.CaptureFixture[str]) -> dict:
    (line,) = capsys.readouterr().out.splitlines()
    return json.loads(line)


@pytest.mark.slow
def test_cpu_mode_passes_and_prints_one_json_line(capsys) -> None:
    assert gpu_numerics.main(["--device", "cpu"]) == 0
    result = _line(capsys)
    assert result["ok"] and result["device"] == "cpu"
    assert result["fp32"]["max_abs_diff"] == 0.0  # the same device: the same numbers
    assert result["fp8"]["tensors"] > 0 and result["fp8"]["dequant_max_abs_diff"] == 0.0
    assert result["bf16"]["greedy_agreement"] >= gpu_numerics.BF16_AGREE


def test_a_failure_still_prints_one_json_line(capsys, monkeypatch) -> None:
    def broken(device: str) -> dict:
        raise RuntimeError("CUDA error: no kernel image is available")

    monkeypatch.setattr(gpu_numerics, "run", broken)
    assert gpu_numerics.main(["--device", "cpu"]) == 1
    result = _line(capsys)
    assert result["ok"] is False and "no kernel image" in result["error"]


def test_it_needs_torch_alone() -> None:
    """The GPU machine it runs on may hold torch and nothing else."""
    blocked = ("safetensors", "tokenizers", "transformers", "ray", "sglang", "pydantic")
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, Block())
import benchmarks.gpu_numerics
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_numerics_match_the_cpu(capsys) -> None:
    assert gpu_numerics.main(["--device", "cuda"]) == 0, capsys.readouterr().out
