"""Load a Hugging Face DeepSeek-V3/R1 checkpoint: config.json and safetensors shards.

Reads only the tensors `weight_layout.model_specs` names (and a caller's `keep` filter allows),
tensor by tensor, so an expert-parallel rank touches only its own experts' bytes. FP8 weights
are dequantized with their 128x128 block scales; multi-token-prediction layers are skipped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from serve.engine.reference.architecture import args_from_file
from serve.engine.reference.dense_args import DenseArgs
from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.weight_layout import TensorSpec, is_mtp_tensor, model_specs, scale_name
from serve.errors import CheckpointError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

# Routing must not lose precision: R1 stores the bias in fp32 and computes the gate in fp32.
_FP32_SUFFIXES = ("mlp.gate.weight", "mlp.gate.e_score_correction_bias")


def load_model_args(path: str | Path) -> ModelArgs | DenseArgs:
    """The checkpoint directory's config.json as `ModelArgs`, or `DenseArgs` for a dense
    (Qwen2, Llama) model."""
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        raise CheckpointError(
            f"{cfg} is missing: a checkpoint directory needs the model's {CONFIG_FILE}")
    return args_from_file(cfg)


def dequantize_fp8(
    weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)
) -> torch.Tensor:
    """DeepSeek's block dequantization, in float32: each `block` tile of `weight` times its
    entry of `scale_inv` (shape [ceil(out/bo), ceil(in/bi)]; edge tiles may be partial)."""
    rows, cols = weight.shape
    bo, bi = block
    expected = (math.ceil(rows / bo), math.ceil(cols / bi))
    if tuple(scale_inv.shape) != expected:
        raise CheckpointError(
            f"weight_scale_inv has shape {list(scale_inv.shape)}, expected {list(expected)} "
            f"for a {rows}x{cols} weight in {bo}x{bi} blocks")
    scale = scale_inv.float().repeat_interleave(bo, dim=0)[:rows]
    scale = scale.repeat_interleave(bi, dim=1)[:, :cols]
    return weight.float() * scale


def load_state_dict(
    path: str | Path,
    args: ModelArgs | DenseArgs,
    *,
    dtype: torch.dtype = torch.float32,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Read the model's tensors from a checkpoint directory, keyed by their HF names.

    Reads `model.safetensors.index.json` and its shards, or a single `model.safetensors`.
    Floating tensors are cast to `dtype`, except the MoE gate weight and its
    `e_score_correction_bias`, which stay float32. FP8 tensors are dequantized with their
    `weight_scale_inv`. `keep(name)` false skips a tensor without reading it. Raises
    `CheckpointError` naming the file, the tensor and the expected shape for anything missing
    or mis-shaped.
    """
    from safetensors import safe_open  # here: `dequantize_fp8` alone needs torch only

    root = Path(path)
    weight_map = _weight_map(root)
    mtp = [n for n in weight_map if is_mtp_tensor(args, n)]
    if mtp:
        log.info("%s: skipping %d multi-token-prediction tensors (layers >= %d); this engine "
                 "does not run speculative MTP", root, len(mtp), args.num_hidden_layers)
    specs = model_specs(args)
    _warn_unused(root, args, weight_map, specs)
    block = args.fp8.block_size if args.fp8 is not None else (128, 128)
    state: dict[str, torch.Tensor] = {}
    with ExitStack() as stack:
        handles: dict[str, Any] = {}

        def open_shard(name: str, file: str) -> Any:
            if file not in handles:
                shard = root / file
                if not shard.is_file():
                    raise CheckpointError(
                        f"shard {shard} is missing; {INDEX_FILE} says it holds {name}")
                handles[file] = stack.enter_context(safe_open(str(shard), framework="pt"))
            return handles[file]

        def read(name: str, shape: tuple[int, ...], role: str = "") -> torch.Tensor:
            what = f"tensor {name}" + (f" ({role})" if role else "")
            file = weight_map.get(name)
            if file is None:
                raise CheckpointError(
                    f"{root}: {what} is not in the checkpoint's safetensors files; expected "
                    f"shape {list(shape)}")
            f = open_shard(name, file)
            actual = tuple(f.get_slice(name).get_shape())
            if actual != shape:
                raise CheckpointError(
                    f"{root / file}: {what} has shape {list(actual)}, expected {list(shape)}; "
                    "does config.json match the weights?")
            return f.get_tensor(name)

        for spec in specs:
            if keep is not None and not keep(spec.name):
                continue
            t = read(spec.name, spec.shape)
            if t.dtype == torch.float8_e4m3fn:
                if len(spec.shape) != 2:
                    raise CheckpointError(f"{root}: tensor {spec.name} is fp8 but not a matrix")
                rows, cols = spec.shape
                scale_shape = (math.ceil(rows / block[0]), math.ceil(cols / block[1]))
                role = f"the fp8 block scale of {spec.name}"
                t = dequantize_fp8(t, read(scale_name(spec.name), scale_shape, role), block)
            state[spec.name] = t.to(_target_dtype(spec, dtype))
    return state


def _target_dtype(spec: TensorSpec, dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if spec.name.endswith(_FP32_SUFFIXES) else dtype


def _weight_map(root: Path) -> dict[str, str]:
    """tensor name -> file name, from the index or from the single file's header."""
    index = root / INDEX_FILE
    if index.is_file():
        try:
            return dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: cannot read a weight_map from it: {e}") from e
    single = root / SINGLE_FILE
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as f:
            return dict.fromkeys(f.keys(), SINGLE_FILE)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    raise CheckpointError(
        f"{root} has neither {INDEX_FILE} nor {SINGLE_FILE}; is this a safetensors checkpoint?")


def _warn_unused(
    root: Path, args: ModelArgs | DenseArgs, weight_map: dict[str, str], specs: list[TensorSpec]
) -> None:
    """Tensors the model does not use (besides MTP and scales) usually mean a config mismatch."""
    known = {s.name for s in specs} | {scale_name(s.name) for s in specs if s.fp8}
    unused = sorted(n for n in weight_map if n not in known and not is_mtp_tensor(args, n))
    if unused:
        log.warning("%s: ignoring %d tensors this model does not use, e.g. %s", root,
                    len(unused), ", ".join(unused[:3]))
