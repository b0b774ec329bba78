"""Capacity planning for a dense model — the distilled R1 models (Qwen2, Llama) — on GPUs.

The same `CapacityPlan` as R1's (capacity.py), from a Qwen2 or Llama config.json. One instance
is tensor-parallel over its GPUs on one node; more throughput comes from more instances (Ray
Serve replicas), so there is no expert or attention data parallelism to plan.

Weights are bf16, as the distills ship them: linear weights (and Qwen2's q/k/v biases),
embeddings and lm_head split over the TP ranks, RMSNorm weights on every rank.

KV cache: grouped-query attention caches a key and a value of `head_dim` per KV head, per token
and layer. TP gives each rank its share of the KV heads; with more ranks than KV heads each
rank still holds a whole head (SGLang replicates them). Every rank holds its share of every
token, so the instance's token capacity is one GPU's pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cluster.capacity import (
    KV_DTYPE_BYTES,
    CapacityPlan,
    GpuSpec,
    KvDtype,
    Layout,
    Weights,
    _gib,
    _gpu_spec,
)

DENSE_MODEL_TYPES = ("qwen2", "llama")
TP_SIZES = (1, 2, 4, 8)  # tensor-parallel sizes one node offers


def is_dense_config(config: Mapping[str, Any]) -> bool:
    """Whether a parsed config.json is a dense Qwen2 or Llama model."""
    return config.get("model_type") in DENSE_MODEL_TYPES


@dataclass(frozen=True)
class DenseShape:
    """The config.json fields that size a dense Qwen2 or Llama model."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int | None
    tie_word_embeddings: bool
    qkv_bias: bool  # Qwen2 always; Llama with attention_bias

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DenseShape:
        """Read the fields from a parsed config.json; ValueError names a missing field."""
        required = ("hidden_size", "num_hidden_layers", "intermediate_size",
                    "num_attention_heads", "vocab_size")
        missing = [k for k in required if not isinstance(config.get(k), int)]
        if missing or not is_dense_config(config):
            raise ValueError(f"model config lacks integer field(s) {missing} or model_type "
                             f"{config.get('model_type')!r} is not one of {DENSE_MODEL_TYPES}")
        heads = config["num_attention_heads"]
        kind = config["model_type"]
        return cls(
            model_type=kind, **{k: config[k] for k in required},
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            max_position_embeddings=config.get("max_position_embeddings"),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=kind == "qwen2" or bool(config.get("attention_bias", False)))


def count_dense_weights(shape: DenseShape) -> Weights:
    """Every tensor of the checkpoint, bf16: dense bytes split over TP, norms replicated."""
    h, hd = shape.hidden_size, shape.head_dim
    q, kv = shape.num_attention_heads * hd, shape.num_key_value_heads * hd
    attention = h * q + 2 * h * kv + q * h + (q + 2 * kv if shape.qkv_bias else 0)
    mlp = 3 * h * shape.intermediate_size
    layer = attention + mlp
    embeddings = shape.vocab_size * h * (1 if shape.tie_word_embeddings else 2)
    dense = shape.num_hidden_layers * layer + embeddings
    norms = shape.num_hidden_layers * 2 * h + h
    return Weights(parameters=dense + norms, dense_bytes=2 * dense, replicated_bytes=2 * norms)


def dense_kv_bytes_per_token(shape: DenseShape, kv_dtype: KvDtype = "bf16", tp: int = 1) -> int:
    """K and V per token on one of `tp` ranks: layers * 2 * its KV heads * head_dim * bytes."""
    if kv_dtype not in KV_DTYPE_BYTES:
        raise ValueError(f"kv dtype must be one of {sorted(KV_DTYPE_BYTES)}, got {kv_dtype!r}")
    heads = max(1, shape.num_key_value_heads // tp)
    return shape.num_hidden_layers * 2 * heads * shape.head_dim * KV_DTYPE_BYTES[kv_dtype]


def plan_dense(config: Mapping[str, Any], gpu: GpuSpec | str, layout: Layout) -> CapacityPlan:
    """Plan `layout` for the dense model in `config` on `gpu`; `smallest_fitting` is the
    fewest GPUs of one node (TP 1, 2, 4 or 8) that hold the model and one request."""
    spec = _gpu_spec(gpu)
    shape = DenseShape.from_config(config)
    _validate(shape, layout)
    result = _evaluate(shape, spec, layout)
    smallest = None
    for tp in TP_SIZES:
        candidate = dataclasses.replace(layout, gpus_per_node=tp, nodes=1, ep=None)
        if _divides(shape, tp) and _evaluate(shape, spec, candidate).fits:
            smallest = candidate
            break
    if not result.fits and smallest is None:
        result = dataclasses.replace(
            result, reason=f"{result.reason}; no layout of up to {TP_SIZES[-1]} GPUs fits")
    return dataclasses.replace(result, smallest_fitting=smallest, dense=True)


def _divides(shape: DenseShape, tp: int) -> bool:
    kv = shape.num_key_value_heads
    return shape.num_attention_heads % tp == 0 and (kv % tp == 0 or tp % kv == 0)


def _validate(shape: DenseShape, layout: Layout) -> None:
    """Raise ValueError naming the knob when this layout cannot run the dense model."""
    what = f"a dense {shape.model_type} model has no experts"
    if layout.ep not in (None, 1) or layout.redundant_experts:
        raise ValueError(f"--ep/--redundant: {what}; drop them")
    if layout.dp_attention or layout.mtp:
        raise ValueError(f"--dp-attention/--mtp do not apply: {what} and no MTP layer; more "
                         "instances (Serve replicas) add throughput")
    if layout.nodes != 1:
        raise ValueError(f"--nodes {layout.nodes}: one instance of a dense model is planned on "
                         "one node; more instances are Serve replicas")
    if layout.context < 1:
        raise ValueError(f"context must be >= 1 token, got {layout.context}")
    if shape.max_position_embeddings and layout.context > shape.max_position_embeddings:
        raise ValueError(f"context {layout.context} exceeds the model's "
                         f"max_position_embeddings {shape.max_position_embeddings}")
    if not 0 < layout.memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {layout.memory_fraction}")
    if not _divides(shape, layout.num_gpus):
        raise ValueError(
            f"tensor parallelism over {layout.num_gpus} GPUs needs the "
            f"{shape.num_attention_heads} attention heads to divide evenly and the "
            f"{shape.num_key_value_heads} KV heads to divide or be divided by it; use "
            f"--gpus-per-node {' or '.join(str(t) for t in TP_SIZES if _divides(shape, t))}")


def _evaluate(shape: DenseShape, gpu: GpuSpec, layout: Layout) -> CapacityPlan:
    weights = count_dense_weights(shape)
    tp = layout.num_gpus
    per_gpu = -(-weights.dense_bytes // tp) + weights.replicated_bytes
    usable = int(layout.memory_fraction * gpu.memory_bytes)
    per_token = dense_kv_bytes_per_token(shape, layout.kv_dtype)  # the whole instance's
    kv_bytes = max(0, usable - per_gpu)
    tokens = kv_bytes // dense_kv_bytes_per_token(shape, layout.kv_dtype, tp)
    concurrent = tokens // layout.context
    reason = None
    if per_gpu > usable:
        reason = (f"weights need {_gib(per_gpu)} per GPU but only {_gib(usable)} is usable "
                  f"({layout.memory_fraction:.0%} of {gpu.name}'s {_gib(gpu.memory_bytes)})")
    elif concurrent < 1:
        reason = (f"after {_gib(per_gpu)} of weights, the {_gib(kv_bytes)} left per GPU holds "
                  f"{tokens} tokens of KV cache, fewer than one {layout.context}-token request")
    return CapacityPlan(
        gpu=gpu, layout=dataclasses.replace(layout, ep=1), fits=reason is None,
        parameters=weights.parameters, weight_bytes_total=weights.total_bytes,
        weight_bytes_per_gpu=per_gpu, usable_bytes_per_gpu=usable, kv_bytes_per_token=per_token,
        kv_bytes_per_gpu=kv_bytes, kv_cache_tokens=tokens, max_concurrent_requests=concurrent,
        reason=reason)
