"""A tiny distilled-R1 checkpoint (dense Qwen2 or Llama) in exactly the Hugging Face layout, for
tests and laptops.

The config is the real distill's (DeepSeek-R1-Distill-Qwen-1.5B or -Llama-8B) with the shape
made small but its attention kept: Qwen2's q/k/v bias, grouped-query heads (4 query heads per
KV head), Llama 3's rope scaling. Weights are random, stored fp32 or bf16 (the distills ship
bf16) in safetensors shards with an index. The tokenizer is the tiny R1 tokenizer with R1's
chat template in tokenizer_config.json, as the distills carry it. The same seed writes
byte-identical files.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from serve.engine.reference.dense_args import ARCHITECTURES, DenseArgs
from serve.engine.reference.tiny_checkpoint import (
    _init,
    _write_json,
    _write_shards,
    tokenizer_config,
    train_tiny_tokenizer,
)
from serve.engine.reference.weight_layout import model_specs

TINY_DENSE_SHAPE: dict[str, int] = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 16384,
}
DENSE_DTYPES = ("fp32", "bf16")
# The distill whose config.json each tiny architecture starts from.
DISTILL_CONFIGS = {"qwen2": "distill_qwen_1.5b_config.json",
                   "llama": "distill_llama_8b_config.json"}

_DATA = resources.files("serve.engine.reference") / "data"


def write_tiny_dense_checkpoint(out: Path, arch: str, seed: int = 0, dtype: str = "fp32",
                                shards: int = 3) -> Path:
    """Write a tiny `arch` ("qwen2" or "llama") checkpoint into `out` and return `out`.

    shards: 1 writes `model.safetensors`, more write `model-0000i-of-0000N.safetensors` plus
    `model.safetensors.index.json`. The fp32 and bf16 checkpoints of a seed hold the same
    values, rounded.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if dtype not in DENSE_DTYPES:
        raise ValueError(f"dtype={dtype!r}; a dense checkpoint is one of "
                         f"{', '.join(DENSE_DTYPES)}")
    if shards < 1:
        raise ValueError(f"shards={shards}; need at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer()
    (out / "tokenizer.json").write_text(tokenizer.to_str(pretty=True), encoding="utf-8")
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    cfg = tiny_dense_config(arch, tokenizer.get_vocab_size(with_added_tokens=True), dtype)
    _write_json(out / "config.json", cfg)
    _write_json(out / "generation_config.json", {
        "_from_model_config": True, "bos_token_id": 0, "eos_token_id": 1, "do_sample": True,
        "temperature": 0.6, "top_p": 0.95, "transformers_version": "4.46.3",
    })
    args = DenseArgs.from_dict(cfg, source=str(out / "config.json"))
    _write_shards(out, tiny_dense_tensors(args, seed, dtype), shards)
    return out


def tiny_dense_config(arch: str, vocab_size: int, dtype: str) -> dict[str, Any]:
    """The distill's config.json with the tiny shape and the tiny tokenizer's BOS/EOS ids."""
    cfg: dict[str, Any] = json.loads(
        (_DATA / DISTILL_CONFIGS[arch]).read_text(encoding="utf-8"))
    cfg.update(TINY_DENSE_SHAPE)
    cfg.update(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1,
               torch_dtype="float32" if dtype == "fp32" else "bfloat16")
    return cfg


def tiny_dense_tensors(args: DenseArgs, seed: int, dtype: str) -> dict[str, torch.Tensor]:
    """Every tensor as the file stores it, in module order, from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    target = torch.float32 if dtype == "fp32" else torch.bfloat16
    return {spec.name: _init(spec, args.hidden_size, g).to(target)
            for spec in model_specs(args)}
