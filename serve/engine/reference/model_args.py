"""`ModelArgs`: a DeepSeek-V3/R1 config.json, validated once and frozen."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.errors import UnsupportedConfigError

log = logging.getLogger(__name__)

# Keys read for bookkeeping only: they change nothing in inference.
_IGNORED_KEYS = {
    "architectures", "auto_map", "model_type", "initializer_range", "attention_dropout",
    "use_cache", "transformers_version", "ep_size", "pad_token_id", "dtype", "torch_dtype",
    "pretraining_tp", "tokenizer_class", "num_experts_per_tok_group", "aux_loss_alpha",
    "seq_aux", "rope_interleave",
}


@dataclass(frozen=True)
class RopeArgs:
    theta: float
    rope_type: str  # "default" | "yarn" | "llama3"
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 0.0  # 0 when absent
    mscale_all_dim: float = 0.0  # 0 when absent
    attention_factor: float | None = None  # scales cos/sin; inferred when absent
    truncate: bool = True  # round the YaRN correction range to whole dims
    interleave: bool = True  # DeepSeek stores rope dims as interleaved pairs
    low_freq_factor: float = 1.0  # llama3: wavelengths above original/low are interpolated
    high_freq_factor: float = 4.0  # llama3: wavelengths below original/high are kept

    @property
    def cos_sin_scale(self) -> float:
        """YaRN's attention factor on cos/sin, as transformers infers it."""
        if self.rope_type != "yarn":
            return 1.0
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:
            return _yarn_mscale(self.factor, self.mscale) / _yarn_mscale(
                self.factor, self.mscale_all_dim)
        return _yarn_mscale(self.factor, 1.0)


def _yarn_mscale(factor: float, mscale: float) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


@dataclass(frozen=True)
class Fp8Args:
    block_size: tuple[int, int] = (128, 128)


@dataclass(frozen=True)
class ModelArgs:
    """Every field of a DeepSeek-V3/R1 config.json that changes the computation."""

    # vocabulary and width
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    bos_token_id: int
    eos_token_id: int
    # dense MLP
    intermediate_size: int
    first_k_dense_replace: int
    # MoE
    moe_intermediate_size: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    routed_scaling_factor: float
    # MLA
    num_attention_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    attention_bias: bool
    rope: RopeArgs
    # storage
    num_nextn_predict_layers: int = 0
    fp8: Fp8Args | None = None
    torch_dtype: str = "bfloat16"

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer: the latent plus the shared rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(qk_head_dim), times mscale^2 under YaRN (DeepSeek-V2 paper, appendix)."""
        scale = self.qk_head_dim**-0.5
        r = self.rope
        if r.rope_type == "yarn" and r.mscale_all_dim:
            m = _yarn_mscale(r.factor, r.mscale_all_dim)
            scale *= m * m
        return scale

    def is_moe_layer(self, layer: int) -> bool:
        return layer >= self.first_k_dense_replace

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], source: str = "config.json") -> ModelArgs:
        """Validate a parsed config.json; unsupported values raise `UnsupportedConfigError`."""
        return _parse(cfg, source)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelArgs:
        path = Path(path)
        try:
            cfg = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UnsupportedConfigError(f"{path}: cannot read config: {e}") from e
        return _parse(cfg, str(path))


def _require(ok: bool, source: str, key: str, value: Any, supported: str) -> None:
    if not ok:
        raise UnsupportedConfigError(
            f"{source}: {key}={value!r} is not supported; this engine implements {supported}"
        )


def _parse_rope(cfg: dict[str, Any], source: str) -> RopeArgs:
    # Older checkpoints (R1) carry rope_theta + rope_scaling; newer ones rope_parameters.
    params = cfg.get("rope_parameters")
    if params is None:
        params = dict(cfg.get("rope_scaling") or {})
        params.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    _require(rope_type in ("default", "yarn"), source, "rope type", rope_type, "'default', 'yarn'")
    interleave = cfg.get("rope_interleave", True)
    if rope_type == "default":
        return RopeArgs(theta=float(params["rope_theta"]), rope_type="default",
                        interleave=interleave)
    return RopeArgs(
        theta=float(params["rope_theta"]),
        rope_type="yarn",
        factor=float(params["factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        beta_fast=float(params.get("beta_fast", 32)),
        beta_slow=float(params.get("beta_slow", 1)),
        mscale=float(params.get("mscale") or 0),
        mscale_all_dim=float(params.get("mscale_all_dim") or 0),
        attention_factor=(None if params.get("attention_factor") is None
                          else float(params["attention_factor"])),
        truncate=bool(params.get("truncate", True)),
        interleave=interleave,
    )


def _parse_fp8(cfg: dict[str, Any], source: str) -> Fp8Args | None:
    q = cfg.get("quantization_config")
    if not q:
        return None
    _require(q.get("quant_method") == "fp8", source, "quantization_config.quant_method",
             q.get("quant_method"), "'fp8'")
    _require(q.get("fmt", "e4m3") == "e4m3", source, "quantization_config.fmt", q.get("fmt"),
             "'e4m3'")
    _require(q.get("activation_scheme", "dynamic") == "dynamic", source,
             "quantization_config.activation_scheme", q.get("activation_scheme"), "'dynamic'")
    block = tuple(q.get("weight_block_size", (128, 128)))
    _require(len(block) == 2 and all(int(b) > 0 for b in block), source,
             "quantization_config.weight_block_size", block, "two positive sizes")
    return Fp8Args(block_size=(int(block[0]), int(block[1])))


_HANDLED_KEYS = {
    "vocab_size", "hidden_size", "num_hidden_layers", "rms_norm_eps", "tie_word_embeddings",
    "max_position_embeddings", "bos_token_id", "eos_token_id", "intermediate_size",
    "first_k_dense_replace", "moe_intermediate_size", "n_routed_experts", "n_shared_experts",
    "num_experts_per_tok", "n_group", "topk_group", "norm_topk_prob", "routed_scaling_factor",
    "num_attention_heads", "num_key_value_heads", "q_lora_rank", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "attention_bias", "rope_theta",
    "rope_scaling", "rope_parameters", "num_nextn_predict_layers", "quantization_config",
    "hidden_act", "scoring_func", "topk_method", "moe_layer_freq", "head_dim",
}


def _parse(cfg: dict[str, Any], source: str) -> ModelArgs:
    unknown = sorted(set(cfg) - _HANDLED_KEYS - _IGNORED_KEYS)
    if unknown:
        log.warning("%s: ignoring keys this engine does not use: %s", source, ", ".join(unknown))
    _require(cfg.get("hidden_act", "silu") == "silu", source, "hidden_act", cfg.get("hidden_act"),
             "'silu'")
    _require(cfg.get("scoring_func", "sigmoid") == "sigmoid", source, "scoring_func",
             cfg.get("scoring_func"), "'sigmoid'")
    _require(cfg.get("topk_method", "noaux_tc") == "noaux_tc", source, "topk_method",
             cfg.get("topk_method"), "'noaux_tc'")
    _require(cfg.get("moe_layer_freq", 1) == 1, source, "moe_layer_freq",
             cfg.get("moe_layer_freq"), "1 (every layer after first_k_dense_replace is MoE)")
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads", heads))
    _require(kv_heads == heads, source, "num_key_value_heads", kv_heads,
             f"num_key_value_heads == num_attention_heads ({heads}) as MLA defines")
    n_experts = int(cfg["n_routed_experts"])
    n_group, topk_group = int(cfg.get("n_group", 1)), int(cfg.get("topk_group", 1))
    top_k = int(cfg["num_experts_per_tok"])
    _require(n_experts % n_group == 0, source, "n_group", n_group,
             f"a divisor of n_routed_experts ({n_experts})")
    _require(1 <= topk_group <= n_group, source, "topk_group", topk_group,
             f"1..n_group ({n_group})")
    _require(top_k <= topk_group * (n_experts // n_group), source, "num_experts_per_tok", top_k,
             "at most topk_group * experts per group")
    q_lora = cfg.get("q_lora_rank")
    eos = cfg.get("eos_token_id", 1)
    return ModelArgs(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        num_hidden_layers=int(cfg["num_hidden_layers"]),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        bos_token_id=int(cfg.get("bos_token_id", 0)),
        eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
        intermediate_size=int(cfg["intermediate_size"]),
        first_k_dense_replace=int(cfg.get("first_k_dense_replace", 0)),
        moe_intermediate_size=int(cfg["moe_intermediate_size"]),
        n_routed_experts=n_experts,
        n_shared_experts=int(cfg.get("n_shared_experts", 0) or 0),
        num_experts_per_tok=top_k,
        n_group=n_group,
        topk_group=topk_group,
        norm_topk_prob=bool(cfg.get("norm_topk_prob", True)),
        routed_scaling_factor=float(cfg.get("routed_scaling_factor", 1.0)),
        num_attention_heads=heads,
        q_lora_rank=None if q_lora is None else int(q_lora),
        kv_lora_rank=int(cfg["kv_lora_rank"]),
        qk_nope_head_dim=int(cfg["qk_nope_head_dim"]),
        qk_rope_head_dim=int(cfg["qk_rope_head_dim"]),
        v_head_dim=int(cfg["v_head_dim"]),
        attention_bias=bool(cfg.get("attention_bias", False)),
        rope=_parse_rope(cfg, source),
        num_nextn_predict_layers=int(cfg.get("num_nextn_predict_layers", 0) or 0),
        fp8=_parse_fp8(cfg, source),
        torch_dtype=str(cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))),
    )
