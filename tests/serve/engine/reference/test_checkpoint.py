"""The checkpoint loader against tiny checkpoints in R1's exact on-disk layout."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from serve.engine.reference.checkpoint import dequantize_fp8, load_model_args, load_state_dict
from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint
from serve.engine.reference.weight_layout import expert_of, is_mtp_tensor, model_specs, scale_name
from serve.errors import CheckpointError

# Widths that are not multiples of 128, so partial edge blocks are exercised.
ODD_FP8 = (
    "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",  # 80 x 256
    "model.layers.1.self_attn.kv_b_proj.weight",  # 512 x 64
    "model.layers.2.self_attn.q_b_proj.weight",  # 384 x 128
    "model.layers.3.mlp.experts.5.down_proj.weight",  # 256 x 128
)


def _weight_map(root: Path) -> dict[str, str]:
    return json.loads((root / "model.safetensors.index.json").read_text())["weight_map"]


def _raw(root: Path, name: str) -> torch.Tensor:
    with safe_open(str(root / _weight_map(root)[name]), framework="pt") as f:
        return f.get_tensor(name)


def _deepseek_dequant(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """DeepSeek's formula written out block by block, independent of the loader."""
    out = torch.empty(w.shape, dtype=torch.float32)
    for i in range(math.ceil(w.shape[0] / 128)):
        for j in range(math.ceil(w.shape[1] / 128)):
            rows, cols = slice(i * 128, (i + 1) * 128), slice(j * 128, (j + 1) * 128)
            out[rows, cols] = w[rows, cols].float() * s[i, j]
    return out


def test_fp8_loads_to_deepseek_block_dequantization(tiny_fp8_dir: Path) -> None:
    args = load_model_args(tiny_fp8_dir)
    state = load_state_dict(tiny_fp8_dir, args, keep=lambda n: n in ODD_FP8)
    assert set(state) == set(ODD_FP8)
    for name in ODD_FP8:
        w, s = _raw(tiny_fp8_dir, name), _raw(tiny_fp8_dir, scale_name(name))
        assert w.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
        assert tuple(s.shape) == (math.ceil(w.shape[0] / 128), math.ceil(w.shape[1] / 128))
        assert torch.equal(state[name], _deepseek_dequant(w, s)), name


def test_fp8_weights_are_close_to_fp32_of_same_seed(tiny_fp32_dir: Path,
                                                     tiny_fp8_dir: Path) -> None:
    args = load_model_args(tiny_fp8_dir)
    assert args.fp8 is not None and load_model_args(tiny_fp32_dir).fp8 is None
    fp8, ref = load_state_dict(tiny_fp8_dir, args), load_state_dict(tiny_fp32_dir, args)
    assert set(fp8) == set(ref) == {s.name for s in model_specs(args)}
    for spec in model_specs(args):
        got, want = fp8[spec.name], ref[spec.name]
        assert got.dtype == torch.float32
        if spec.fp8:
            # Round to nearest e4m3: half an ulp is 2^-4 relative, 2^-10 x scale if subnormal.
            scale = _raw(tiny_fp8_dir, scale_name(spec.name))
            scale = scale.repeat_interleave(128, 0)[: want.shape[0]]
            scale = scale.repeat_interleave(128, 1)[:, : want.shape[1]]
            bound = want.abs() / 16 + scale / 1024 + 1e-7
            assert ((got - want).abs() <= bound).all(), spec.name
            assert (got - want).norm() / want.norm() < 0.04, spec.name
        elif spec.name.endswith("e_score_correction_bias"):
            assert torch.equal(got, want)  # stored fp32 in every layout
        else:
            torch.testing.assert_close(got, want, rtol=2**-8, atol=0, msg=spec.name)


def test_dtype_cast_keeps_routing_in_fp32(tiny_fp8_dir: Path) -> None:
    args = load_model_args(tiny_fp8_dir)
    state = load_state_dict(tiny_fp8_dir, args, dtype=torch.bfloat16)
    for name, t in state.items():
        routing = name.endswith(("mlp.gate.weight", "e_score_correction_bias"))
        assert t.dtype == (torch.float32 if routing else torch.bfloat16), name


def test_mtp_tensors_skipped_with_one_log_line(tiny_fp32_dir: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    args = load_model_args(tiny_fp32_dir)
    n_mtp = sum(is_mtp_tensor(args, n) for n in _weight_map(tiny_fp32_dir))
    assert n_mtp > 4  # eh_proj, enorm, hnorm, shared_head.norm and a whole block
    with caplog.at_level(logging.INFO, logger="serve.engine.reference.checkpoint"):
        state = load_state_dict(tiny_fp32_dir, args)
    lines = [r.getMessage() for r in caplog.records if "multi-token-prediction" in r.getMessage()]
    assert len(lines) == 1 and f" {n_mtp} " in lines[0]
    assert not any(n.startswith(f"model.layers.{args.num_hidden_layers}.") for n in state)


def test_single_file_and_sharded_load_identically(tiny_fp32_dir: Path, tmp_path: Path) -> None:
    single = write_tiny_checkpoint(tmp_path / "single", seed=0, shards=1)
    assert (single / "model.safetensors").is_file()
    assert not (single / "model.safetensors.index.json").exists()
    args = load_model_args(single)
    a, b = load_state_dict(single, args), load_state_dict(tiny_fp32_dir, args)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_is_byte_identical_and_other_seeds_differ(tiny_fp32_dir: Path,
                                                            tmp_path: Path) -> None:
    again = write_tiny_checkpoint(tmp_path / "again", seed=0)
    files = sorted(p.name for p in tiny_fp32_dir.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 3
    for f in files:
        assert (again / f).read_bytes() == (tiny_fp32_dir / f).read_bytes(), f
    other = write_tiny_checkpoint(tmp_path / "other", seed=1)
    for f in files:
        same = (other / f).read_bytes() == (tiny_fp32_dir / f).read_bytes()
        assert same == (not f.endswith(".safetensors")), f  # only the weights depend on seed


def test_keep_reads_only_kept_tensors(tiny_fp32_dir: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_fp32_dir, tmp_path / "ckpt")
    args = load_model_args(root)
    weight_map = _weight_map(root)
    gone = "model-00002-of-00003.safetensors"
    (root / gone).unlink()

    def keep(name: str) -> bool:  # an EP rank holding experts 0..3, away from the lost shard
        e = expert_of(name)
        return weight_map[name] != gone and (e is None or e[1] < 4)

    state = load_state_dict(root, args, keep=keep)
    assert set(state) == {s.name for s in model_specs(args) if keep(s.name)}
    assert {expert_of(n)[1] for n in state if expert_of(n)} == {0, 1, 2, 3}


def test_missing_shard_names_file_and_tensor(tiny_fp32_dir: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_fp32_dir, tmp_path / "ckpt")
    gone = "model-00002-of-00003.safetensors"
    (root / gone).unlink()
    with pytest.raises(CheckpointError) as e:
        load_state_dict(root, load_model_args(root))
    first = next(s.name for s in model_specs(load_model_args(root))
                 if _weight_map(root)[s.name] == gone)
    assert gone in e.value.message and first in e.value.message


def _single_file(tmp_path: Path, dtype: str) -> tuple[Path, dict[str, torch.Tensor]]:
    root = write_tiny_checkpoint(tmp_path / dtype, seed=0, dtype=dtype, shards=1)
    return root, load_file(str(root / "model.safetensors"))


def test_missing_tensor_names_tensor_and_shape(tmp_path: Path) -> None:
    root, tensors = _single_file(tmp_path, "fp32")
    name = "model.layers.2.mlp.experts.7.up_proj.weight"
    del tensors[name]
    save_file(tensors, str(root / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_state_dict(root, load_model_args(root))
    assert name in e.value.message and "[128, 256]" in e.value.message


def test_misshaped_tensor_names_file_tensor_and_both_shapes(tmp_path: Path) -> None:
    root, tensors = _single_file(tmp_path, "fp32")
    name = "model.layers.1.self_attn.kv_b_proj.weight"
    tensors[name] = torch.zeros(512, 32)
    save_file(tensors, str(root / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_state_dict(root, load_model_args(root))
    msg = e.value.message
    assert "model.safetensors" in msg and name in msg
    assert "[512, 32]" in msg and "[512, 64]" in msg


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_bad_fp8_scale_names_tensor_and_shape(tmp_path: Path, damage: str) -> None:
    root, tensors = _single_file(tmp_path, "fp8")
    weight = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"  # 80 x 256 -> scale [1, 2]
    if damage == "missing":
        del tensors[scale_name(weight)]
    else:
        tensors[scale_name(weight)] = torch.ones(2, 2)
    save_file(tensors, str(root / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_state_dict(root, load_model_args(root))
    msg = e.value.message
    assert scale_name(weight) in msg and weight in msg and "[1, 2]" in msg


def test_missing_config_and_weights_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json"):
        load_model_args(tmp_path)
    shutil.copy(write_tiny_checkpoint(tmp_path / "src", shards=1) / "config.json", tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        load_state_dict(tmp_path, load_model_args(tmp_path))


def test_dequantize_fp8_handles_partial_blocks_and_rejects_bad_scale() -> None:
    w = torch.randn(130, 200, generator=torch.Generator().manual_seed(0)).to(torch.float8_e4m3fn)
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(dequantize_fp8(w, s), _deepseek_dequant(w, s))
    with pytest.raises(CheckpointError, match=r"expected \[2, 2\]"):
        dequantize_fp8(w, torch.ones(1, 2))


def test_transformers_accepts_tiny_config(tiny_fp32_dir: Path) -> None:
    from transformers import AutoConfig, DeepseekV3Config

    cfg = DeepseekV3Config.from_pretrained(tiny_fp32_dir)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.n_routed_experts) == (256, 4, 16)
    assert cfg.vocab_size == load_model_args(tiny_fp32_dir).vocab_size
    assert isinstance(AutoConfig.from_pretrained(tiny_fp32_dir), DeepseekV3Config)
