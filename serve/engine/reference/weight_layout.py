"""The checkpoint's tensors as data: name -> shape, which are FP8, which belong to an expert.

Names are the Hugging Face DeepSeek-V3 (or Qwen2/Llama) names, which are also our module
paths, so a loaded state dict goes straight into `Transformer` (or `DenseTransformer`). The
loader, the tiny-checkpoint writers and expert-parallel sharding all read this one table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serve.engine.reference.dense_args import DenseArgs
from serve.engine.reference.model_args import ModelArgs

_EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    fp8: bool  # stored as float8_e4m3fn with a `weight_scale_inv` when the checkpoint is FP8


def _linear(specs: list[TensorSpec], prefix: str, out: int, inp: int, bias: bool = False) -> None:
    specs.append(TensorSpec(f"{prefix}.weight", (out, inp), fp8=True))
    if bias:
        specs.append(TensorSpec(f"{prefix}.bias", (out,), fp8=False))


def _norm(specs: list[TensorSpec], prefix: str, dim: int) -> None:
    specs.append(TensorSpec(f"{prefix}.weight", (dim,), fp8=False))


def _mlp(specs: list[TensorSpec], prefix: str, dim: int, inter: int) -> None:
    _linear(specs, f"{prefix}.gate_proj", inter, dim)
    _linear(specs, f"{prefix}.up_proj", inter, dim)
    _linear(specs, f"{prefix}.down_proj", dim, inter)


def layer_specs(args: ModelArgs, layer: int) -> list[TensorSpec]:
    """Tensors of decoder layer `layer` (attention, norms, dense MLP or MoE)."""
    p = f"model.layers.{layer}"
    d, h = args.hidden_size, args.num_attention_heads
    specs: list[TensorSpec] = []
    _norm(specs, f"{p}.input_layernorm", d)
    _norm(specs, f"{p}.post_attention_layernorm", d)
    a = f"{p}.self_attn"
    if args.q_lora_rank is None:
        _linear(specs, f"{a}.q_proj", h * args.qk_head_dim, d)
    else:
        _linear(specs, f"{a}.q_a_proj", args.q_lora_rank, d, args.attention_bias)
        _norm(specs, f"{a}.q_a_layernorm", args.q_lora_rank)
        _linear(specs, f"{a}.q_b_proj", h * args.qk_head_dim, args.q_lora_rank)
    _linear(specs, f"{a}.kv_a_proj_with_mqa", args.kv_cache_dim, d, args.attention_bias)
    _norm(specs, f"{a}.kv_a_layernorm", args.kv_lora_rank)
    _linear(specs, f"{a}.kv_b_proj", h * (args.qk_nope_head_dim + args.v_head_dim),
            args.kv_lora_rank)
    _linear(specs, f"{a}.o_proj", d, h * args.v_head_dim, args.attention_bias)
    if not args.is_moe_layer(layer):
        _mlp(specs, f"{p}.mlp", d, args.intermediate_size)
        return specs
    specs.append(TensorSpec(f"{p}.mlp.gate.weight", (args.n_routed_experts, d), fp8=False))
    specs.append(TensorSpec(f"{p}.mlp.gate.e_score_correction_bias", (args.n_routed_experts,),
                            fp8=False))
    for e in range(args.n_routed_experts):
        _mlp(specs, f"{p}.mlp.experts.{e}", d, args.moe_intermediate_size)
    if args.n_shared_experts:
        _mlp(specs, f"{p}.mlp.shared_experts", d,
             args.moe_intermediate_size * args.n_shared_experts)
    return specs


def dense_layer_specs(args: DenseArgs, layer: int) -> list[TensorSpec]:
    """Tensors of a dense (Qwen2, Llama) decoder layer: grouped-query attention, norms, MLP."""
    p, a = f"model.layers.{layer}", f"model.layers.{layer}.self_attn"
    d, hd = args.hidden_size, args.head_dim
    specs: list[TensorSpec] = []
    _norm(specs, f"{p}.input_layernorm", d)
    _norm(specs, f"{p}.post_attention_layernorm", d)
    _linear(specs, f"{a}.q_proj", args.num_attention_heads * hd, d, args.qkv_bias)
    _linear(specs, f"{a}.k_proj", args.num_key_value_heads * hd, d, args.qkv_bias)
    _linear(specs, f"{a}.v_proj", args.num_key_value_heads * hd, d, args.qkv_bias)
    _linear(specs, f"{a}.o_proj", d, args.num_attention_heads * hd, args.o_bias)
    _mlp(specs, f"{p}.mlp", d, args.intermediate_size)
    return specs


def model_specs(args: ModelArgs | DenseArgs) -> list[TensorSpec]:
    """Every tensor the model needs, in module order (MTP layers excluded)."""
    specs = [TensorSpec("model.embed_tokens.weight", (args.vocab_size, args.hidden_size), False)]
    for layer in range(args.num_hidden_layers):
        specs.extend(dense_layer_specs(args, layer) if isinstance(args, DenseArgs)
                     else layer_specs(args, layer))
    specs.append(TensorSpec("model.norm.weight", (args.hidden_size,), False))
    if not args.tie_word_embeddings:
        specs.append(TensorSpec("lm_head.weight", (args.vocab_size, args.hidden_size), False))
    return specs


def expert_of(name: str) -> tuple[int, int] | None:
    """(layer, expert) for a routed expert's tensor name, else None."""
    m = _EXPERT.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_mtp_tensor(args: ModelArgs, name: str) -> bool:
    """Multi-token-prediction layers are stored after the last decoder layer."""
    m = _LAYER.match(name)
    return m is not None and int(m.group(1)) >= args.num_hidden_layers


def scale_name(weight_name: str) -> str:
    """The FP8 block-scale tensor that goes with a weight."""
    return weight_name.removesuffix(".weight") + ".weight_scale_inv"
