"""`DenseArgs`: a dense Qwen2 or Llama config.json (the distilled R1 models), validated once and
frozen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from serve.engine.reference.model_args import RopeArgs
from serve.errors import UnsupportedConfigError

log = logging.getLogger(__name__)

# model_type -> the transformers class whose numerics this engine reproduces
ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}

_HANDLED_KEYS = {
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "rms_norm_eps",
    "tie_word_embeddings", "max_position_embeddings", "bos_token_id", "eos_token_id",
    "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
    "attention_bias", "mlp_bias", "hidden_act", "rope_theta", "rope_scaling", "rope_parameters",
    "use_sliding_window", "use_mrope", "layer_types",
}
# Keys read for bookkeeping only: they change nothing in inference.
_IGNORED_KEYS = {
    "architectures", "attention_dropout", "initializer_range", "use_cache",
    "transformers_version", "pad_token_id", "dtype", "torch_dtype", "pretraining_tp",
    "sliding_window", "max_window_layers", "_name_or_path", "tokenizer_class",
}


@dataclass(frozen=True)
class DenseArgs:
    """Every field of a Qwen2 or Llama config.json that changes the computation."""

    architecture: str  # "qwen2" | "llama"
    # vocabulary and width
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    bos_token_id: int
    eos_token_id: int
    # MLP (SwiGLU, no bias)
    intermediate_size: int
    # grouped-query attention
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    qkv_bias: bool  # Qwen2: always; Llama: attention_bias
    o_bias: bool  # Llama's attention_bias covers o_proj too; Qwen2's o_proj has none
    rope: RopeArgs
    torch_dtype: str = "bfloat16"
    fp8: None = None  # distilled checkpoints ship bf16; the loader asks

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer: every KV head's key, then every KV head's value."""
        return 2 * self.num_key_value_heads * self.head_dim

    @property
    def softmax_scale(self) -> float:
        return self.head_dim**-0.5

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], source: str = "config.json") -> DenseArgs:
        """Validate a parsed config.json; unsupported values raise `UnsupportedConfigError`."""
        return _parse(cfg, source)


def is_dense_config(cfg: dict[str, Any]) -> bool:
    """Whether a parsed config.json is one of the dense architectures `DenseArgs` reads."""
    return cfg.get("model_type") in ARCHITECTURES


def _require(ok: bool, source: str, key: str, value: Any, supported: str) -> None:
    if not ok:
        raise UnsupportedConfigError(
            f"{source}: {key}={value!r} is not supported; this engine implements {supported}")


def _parse_rope(cfg: dict[str, Any], source: str) -> RopeArgs:
    # Checkpoints saved by transformers < 5 carry rope_theta + rope_scaling; newer ones
    # rope_parameters.
    params = cfg.get("rope_parameters")
    if params is None:
        params = dict(cfg.get("rope_scaling") or {})
        params.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    _require(rope_type in ("default", "llama3"), source, "rope type", rope_type,
             "'default', 'llama3'")
    theta = float(params["rope_theta"])
    if rope_type == "default":
        return RopeArgs(theta=theta, rope_type="default", interleave=False)
    return RopeArgs(
        theta=theta, rope_type="llama3", interleave=False,
        factor=float(params["factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
    )


def _parse(cfg: dict[str, Any], source: str) -> DenseArgs:
    arch = cfg.get("model_type")
    _require(arch in ARCHITECTURES, source, "model_type", arch, "'qwen2', 'llama'")
    unknown = sorted(set(cfg) - _HANDLED_KEYS - _IGNORED_KEYS)
    if unknown:
        log.warning("%s: ignoring keys this engine does not use: %s", source, ", ".join(unknown))
    _require(cfg.get("hidden_act", "silu") == "silu", source, "hidden_act", cfg.get("hidden_act"),
             "'silu'")
    _require(not cfg.get("use_sliding_window", False), source, "use_sliding_window",
             cfg.get("use_sliding_window"), "full attention in every layer (false)")
    _require(not cfg.get("use_mrope", False), source, "use_mrope", cfg.get("use_mrope"),
             "one-dimensional positions (false)")
    layer_types = set(cfg.get("layer_types") or ["full_attention"])
    _require(layer_types == {"full_attention"}, source, "layer_types", sorted(layer_types),
             "'full_attention' in every layer")
    _require(not cfg.get("mlp_bias", False), source, "mlp_bias", cfg.get("mlp_bias"),
             "MLPs without bias (false)")
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    _require(heads % kv_heads == 0, source, "num_key_value_heads", kv_heads,
             f"a divisor of num_attention_heads ({heads})")
    hidden = int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    attention_bias = bool(cfg.get("attention_bias", False))
    eos = cfg.get("eos_token_id", 1)
    return DenseArgs(
        architecture=arch,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        num_hidden_layers=int(cfg["num_hidden_layers"]),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        bos_token_id=int(cfg.get("bos_token_id") or 0),
        eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
        intermediate_size=int(cfg["intermediate_size"]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        qkv_bias=arch == "qwen2" or attention_bias,
        o_bias=arch == "llama" and attention_bias,
        rope=_parse_rope(cfg, source),
        torch_dtype=str(cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))),
    )
