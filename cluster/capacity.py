"""Capacity planning for a DeepSeek-V3-architecture model (R1) on a GPU cluster.

Pure functions from (config.json as a dict, GPU spec, layout) to a `CapacityPlan`. Every size
follows from config.json fields by counting the checkpoint's real tensor shapes; nothing here
is a typed-in total.

Memory model of one GPU (SGLang's): `memory_fraction` of the GPU's memory (SGLang's
`--mem-fraction-static`) holds weights plus the KV pool; the rest is left for activations,
CUDA graphs, NCCL/DeepEP buffers and the CUDA context. Weights are split as follows:

- routed experts: `E + redundant_experts` slots per MoE layer over the EP ranks; when EP is
  smaller than the GPU count, each expert is further tensor-parallel over the EP group's GPUs.
- router gates and RMSNorm weights: replicated on every GPU (they are tiny).
- attention (MLA), dense MLPs of the first `first_k_dense_replace` layers, shared experts,
  embeddings and lm_head ("the dense part"):
  * without DP attention, tensor-parallel over all GPUs (TP = GPU count);
  * with DP attention, every GPU holds the dense part whole. That is exact for attention,
    embeddings and (with DeepEP) shared experts; SGLang can shard the dense MLPs and lm_head,
    so this is a slight overestimate (~1.5 GB on R1), on the safe side.

KV cache: MLA caches one latent (kv_lora_rank + qk_rope_head_dim values) per token per layer,
shared by all heads, so it cannot be split across heads. Without DP attention every TP rank
holds the latent of every request (as SGLang does): the instance's token capacity is one GPU's
pool. With DP attention each GPU holds the cache of its own requests only: capacity is the
sum over GPUs, and a request must fit in one GPU's pool.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

KvDtype = Literal["bf16", "fp8"]
KV_DTYPE_BYTES: dict[str, int] = {"bf16": 2, "fp8": 1}
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model: its name here and its memory as the driver reports it, in bytes."""

    name: str
    memory_bytes: int
    description: str


# Vendors label these "80 GB" and "141 GB"; we use the total the driver reports
# (nvidia-smi memory.total), because that is what CUDA allocates from and what SGLang's
# --mem-fraction-static is a fraction of: 81,559 MiB (85.5e9 bytes, 80 GiB of HBM3 less a
# driver reserve) on H100/H800 SXM, 143,771 MiB (150.8e9 bytes) on H200.
GPUS: dict[str, GpuSpec] = {
    "h100-80g": GpuSpec("h100-80g", 81_559 * MIB, "NVIDIA H100 SXM 80GB HBM3"),
    "h800-80g": GpuSpec("h800-80g", 81_559 * MIB, "NVIDIA H800 SXM 80GB HBM3"),
    "h200-141g": GpuSpec("h200-141g", 143_771 * MIB, "NVIDIA H200 SXM 141GB HBM3e"),
}


@dataclass(frozen=True)
class ModelShape:
    """The config.json fields that size the model (DeepSeek-V3 names)."""

    hidden_size: int
    num_hidden_layers: int
    first_k_dense_replace: int
    moe_layer_freq: int
    intermediate_size: int
    moe_intermediate_size: int
    n_routed_experts: int
    n_shared_experts: int
    num_attention_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    vocab_size: int
    max_position_embeddings: int | None
    num_nextn_predict_layers: int
    tie_word_embeddings: bool
    fp8_block: tuple[int, int] | None  # None: linear weights stored in bf16

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """Read the fields from a parsed config.json; ValueError names a missing field."""
        required = ("hidden_size", "num_hidden_layers", "intermediate_size",
                    "moe_intermediate_size", "n_routed_experts", "num_attention_heads",
                    "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                    "vocab_size")
        missing = [k for k in required if not isinstance(config.get(k), int)]
        if missing:
            raise ValueError(f"model config lacks integer field(s) {missing}; is this a "
                             f"DeepSeek-V3/R1 config.json?")
        quant = config.get("quantization_config") or {}
        block = None
        if quant.get("quant_method") == "fp8":
            block = tuple(quant.get("weight_block_size") or (128, 128))
        return cls(
            **{k: config[k] for k in required},
            first_k_dense_replace=config.get("first_k_dense_replace", 0),
            moe_layer_freq=config.get("moe_layer_freq", 1),
            n_shared_experts=config.get("n_shared_experts") or 0,
            q_lora_rank=config.get("q_lora_rank") or None,
            max_position_embeddings=config.get("max_position_embeddings"),
            num_nextn_predict_layers=config.get("num_nextn_predict_layers", 0),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            fp8_block=block)

    def is_moe_layer(self, layer: int) -> bool:
        """DeepSeek-V3's rule: MoE from layer first_k_dense_replace on, every moe_layer_freq."""
        return layer >= self.first_k_dense_replace and layer % self.moe_layer_freq == 0

    @property
    def num_moe_layers(self) -> int:
        """MoE layers among the main model's layers."""
        return sum(self.is_moe_layer(i) for i in range(self.num_hidden_layers))


@dataclass(frozen=True)
class Weights:
    """Parameter count and stored bytes, split by how the layout distributes them."""

    parameters: int = 0
    routed_bytes: int = 0  # all routed experts of all layers
    dense_bytes: int = 0  # attention, dense MLPs, shared experts, embeddings, lm_head
    replicated_bytes: int = 0  # router gates and norms
    one_expert_bytes: int = 0  # one routed expert in one layer

    def __add__(self, other: Weights) -> Weights:
        return Weights(*(a + b for a, b in zip(dataclasses.astuple(self),
                                               dataclasses.astuple(other), strict=True)))

    @property
    def total_bytes(self) -> int:
        """The whole model once, as stored."""
        return self.routed_bytes + self.dense_bytes + self.replicated_bytes


def count_weights(shape: ModelShape, *, include_mtp: bool = False) -> Weights:
    """Count every tensor of the checkpoint: the main layers, embeddings and lm_head, and with
    `include_mtp` the multi-token-prediction layer(s) SGLang loads for speculative decoding."""
    h = shape.hidden_size

    def linear(out_features: int, in_features: int) -> tuple[int, int]:
        """(parameters, bytes) of one linear weight: FP8 plus fp32 scales per block, or bf16."""
        n = out_features * in_features
        if shape.fp8_block is None:
            return n, 2 * n
        bo, bi = shape.fp8_block
        return n, n + 4 * math.ceil(out_features / bo) * math.ceil(in_features / bi)

    def dense(*linears: tuple[int, int]) -> Weights:
        return Weights(parameters=sum(p for p, _ in linears),
                       dense_bytes=sum(b for _, b in linears))

    def bf16(n: int, *, replicated: bool) -> Weights:
        return (Weights(parameters=n, replicated_bytes=2 * n) if replicated
                else Weights(parameters=n, dense_bytes=2 * n))

    def mlp(inter: int) -> Weights:  # gate_proj, up_proj, down_proj
        return dense(linear(inter, h), linear(inter, h), linear(h, inter))

    heads, qk_head = shape.num_attention_heads, shape.qk_nope_head_dim + shape.qk_rope_head_dim
    if shape.q_lora_rank:
        q = dense(linear(shape.q_lora_rank, h), linear(heads * qk_head, shape.q_lora_rank))
        q += bf16(shape.q_lora_rank, replicated=True)  # q_a_layernorm
    else:
        q = dense(linear(heads * qk_head, h))
    attention = q + dense(
        linear(shape.kv_lora_rank + shape.qk_rope_head_dim, h),  # kv_a_proj_with_mqa
        linear(heads * (shape.qk_nope_head_dim + shape.v_head_dim), shape.kv_lora_rank),
        linear(h, heads * shape.v_head_dim),  # o_proj
    ) + bf16(shape.kv_lora_rank + 2 * h, replicated=True)  # kv_a, input, post-attn norms

    expert = mlp(shape.moe_intermediate_size)
    e = shape.n_routed_experts
    moe = (Weights(parameters=e * expert.parameters, routed_bytes=e * expert.dense_bytes)
           + mlp(shape.n_shared_experts * shape.moe_intermediate_size)
           # Router: bf16 gate weight and the fp32 e_score_correction_bias.
           + Weights(parameters=e * h + e, replicated_bytes=2 * e * h + 4 * e))
    dense_mlp = mlp(shape.intermediate_size)

    total = Weights()
    for layer in range(shape.num_hidden_layers):
        total += attention + (moe if shape.is_moe_layer(layer) else dense_mlp)
    total += bf16(shape.vocab_size * h, replicated=False)  # embed_tokens
    if not shape.tie_word_embeddings:
        total += bf16(shape.vocab_size * h, replicated=False)  # lm_head
    total += bf16(h, replicated=True)  # final norm
    if include_mtp:
        # Each MTP layer: enorm, hnorm, eh_proj (bf16, 2h -> h), one MoE decoder layer and a
        # final norm; its embedding and head are the main model's, shared in memory.
        mtp = attention + moe + bf16(3 * h, replicated=True) + bf16(2 * h * h, replicated=False)
        for _ in range(shape.num_nextn_predict_layers):
            total += mtp
    return dataclasses.replace(total, one_expert_bytes=expert.dense_bytes)


def kv_bytes_per_token(shape: ModelShape, kv_dtype: KvDtype = "bf16", *,
                       include_mtp: bool = False) -> int:
    """MLA latent cache per token: layers * (kv_lora_rank + qk_rope_head_dim) * dtype bytes."""
    if kv_dtype not in KV_DTYPE_BYTES:
        raise ValueError(f"kv dtype must be one of {sorted(KV_DTYPE_BYTES)}, got {kv_dtype!r}")
    layers = shape.num_hidden_layers + (shape.num_nextn_predict_layers if include_mtp else 0)
    return layers * (shape.kv_lora_rank + shape.qk_rope_head_dim) * KV_DTYPE_BYTES[kv_dtype]


@dataclass(frozen=True)
class Layout:
    """How one model instance is laid out on the cluster."""

    gpus_per_node: int = 8
    nodes: int = 1
    context: int = 32_768  # tokens per request (prompt + output) to plan for
    kv_dtype: KvDtype = "bf16"
    ep: int | None = None  # expert-parallel size; None: all GPUs
    dp_attention: bool = False
    redundant_experts: int = 0  # EPLB slots beyond one per routed expert, per MoE layer
    memory_fraction: float = 0.9  # of GPU memory for weights + KV; the rest for activations
    mtp: bool = False  # load the MTP layer(s) for speculative decoding

    @property
    def num_gpus(self) -> int:
        """GPUs in the instance."""
        return self.gpus_per_node * self.nodes

    @property
    def ep_size(self) -> int:
        """The EP size in effect."""
        return self.num_gpus if self.ep is None else self.ep

    def validate(self, shape: ModelShape) -> None:
        """Raise ValueError naming the knob when this layout cannot run the model."""
        if self.gpus_per_node < 1 or self.nodes < 1:
            raise ValueError("gpus_per_node and nodes must be >= 1")
        if self.context < 1:
            raise ValueError(f"context must be >= 1 token, got {self.context}")
        if shape.max_position_embeddings and self.context > shape.max_position_embeddings:
            raise ValueError(f"context {self.context} exceeds the model's "
                             f"max_position_embeddings {shape.max_position_embeddings}")
        if self.kv_dtype not in KV_DTYPE_BYTES:
            raise ValueError(f"kv_dtype must be one of {sorted(KV_DTYPE_BYTES)}")
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")
        if self.ep_size < 1 or self.num_gpus % self.ep_size:
            raise ValueError(f"EP size {self.ep_size} must divide the GPU count {self.num_gpus}")
        slots = shape.n_routed_experts + self.redundant_experts
        if self.redundant_experts < 0 or slots % self.ep_size:
            raise ValueError(
                f"{shape.n_routed_experts} routed experts + {self.redundant_experts} redundant "
                f"do not split evenly over EP size {self.ep_size}; change --ep or --redundant")
        if not self.dp_attention and shape.num_attention_heads % self.num_gpus:
            raise ValueError(
                f"tensor-parallel attention over {self.num_gpus} GPUs needs "
                f"{shape.num_attention_heads} heads to divide evenly; use --dp-attention or "
                f"fewer GPUs")


@dataclass(frozen=True)
class CapacityPlan:
    """What a layout gives: whether the model fits and how much KV cache is left."""

    gpu: GpuSpec
    layout: Layout
    fits: bool
    parameters: int  # main model (without MTP layers)
    weight_bytes_total: int  # everything loaded, once
    weight_bytes_per_gpu: int
    usable_bytes_per_gpu: int  # memory_fraction of the GPU's memory
    kv_bytes_per_token: int
    kv_bytes_per_gpu: int  # pool left after weights (0 when weights do not fit)
    kv_cache_tokens: int  # tokens the instance can hold in KV cache
    max_concurrent_requests: int  # at layout.context tokens each
    reason: str | None = None  # why it does not fit
    smallest_fitting: Layout | None = None  # fewest nodes that would fit, if any
    dense: bool = False  # a dense model (dense_capacity.py): tensor parallel only

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        out = dataclasses.asdict(self)
        out["gpu"] = self.gpu.name
        out["layout"]["num_gpus"] = self.layout.num_gpus
        out["layout"]["ep"] = self.layout.ep_size
        if self.smallest_fitting is not None:
            out["smallest_fitting"]["num_gpus"] = self.smallest_fitting.num_gpus
            out["smallest_fitting"]["ep"] = self.smallest_fitting.ep_size
        return out


def plan(config: Mapping[str, Any], gpu: GpuSpec | str, layout: Layout, *,
         max_nodes: int = 64) -> CapacityPlan:
    """Plan `layout` for the model in `config` (parsed config.json) on `gpu`.

    When the model does not fit, `reason` says why and `smallest_fitting` is the same layout
    with the fewest nodes (up to `max_nodes`, EP over all GPUs) that fits, or None.
    """
    spec = _gpu_spec(gpu)
    shape = ModelShape.from_config(config)
    result = _evaluate(shape, spec, layout)
    if result.fits:
        return result
    for nodes in range(layout.nodes + 1, max_nodes + 1):
        candidate = dataclasses.replace(layout, nodes=nodes, ep=None)
        try:
            if _evaluate(shape, spec, candidate).fits:
                return dataclasses.replace(result, smallest_fitting=candidate)
        except ValueError:  # e.g. heads or experts do not divide: not a candidate
            continue
    return dataclasses.replace(
        result, reason=f"{result.reason}; no layout of up to {max_nodes} nodes fits")


def _evaluate(shape: ModelShape, gpu: GpuSpec, layout: Layout) -> CapacityPlan:
    layout.validate(shape)
    weights = count_weights(shape, include_mtp=layout.mtp)
    n, ep = layout.num_gpus, layout.ep_size
    moe_layers = shape.num_moe_layers + (shape.num_nextn_predict_layers if layout.mtp else 0)
    slots_per_rank = (shape.n_routed_experts + layout.redundant_experts) // ep
    # An EP rank spans n // ep GPUs that split each of its experts tensor-parallel.
    routed = math.ceil(moe_layers * slots_per_rank * weights.one_expert_bytes / (n // ep))
    dense = weights.dense_bytes if layout.dp_attention else math.ceil(weights.dense_bytes / n)
    per_gpu = routed + dense + weights.replicated_bytes
    usable = int(layout.memory_fraction * gpu.memory_bytes)
    per_token = kv_bytes_per_token(shape, layout.kv_dtype, include_mtp=layout.mtp)
    kv_bytes = max(0, usable - per_gpu)
    gpu_tokens = kv_bytes // per_token
    if layout.dp_attention:  # each GPU caches its own requests
        tokens, concurrent = gpu_tokens * n, (gpu_tokens // layout.context) * n
    else:  # the latent is replicated on every TP rank
        tokens, concurrent = gpu_tokens, gpu_tokens // layout.context
    reason = None
    if per_gpu > usable:
        reason = (f"weights need {_gib(per_gpu)} per GPU but only {_gib(usable)} is usable "
                  f"({layout.memory_fraction:.0%} of {gpu.name}'s {_gib(gpu.memory_bytes)})")
    elif concurrent < 1:
        reason = (f"after {_gib(per_gpu)} of weights, the {_gib(kv_bytes)} left per GPU holds "
                  f"{gpu_tokens} tokens of KV cache, fewer than one {layout.context}-token "
                  f"request")
    return CapacityPlan(
        gpu=gpu, layout=layout, fits=reason is None,
        parameters=count_weights(shape).parameters, weight_bytes_total=weights.total_bytes,
        weight_bytes_per_gpu=per_gpu, usable_bytes_per_gpu=usable, kv_bytes_per_token=per_token,
        kv_bytes_per_gpu=kv_bytes, kv_cache_tokens=tokens, max_concurrent_requests=concurrent,
        reason=reason)


def _gpu_spec(gpu: GpuSpec | str) -> GpuSpec:
    if isinstance(gpu, GpuSpec):
        return gpu
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}")
    return GPUS[gpu]


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
