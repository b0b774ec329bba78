"""A tiny DeepSeek-V3/R1 checkpoint in exactly the Hugging Face layout, for tests and laptops.

The shape is small (hidden 256, 4 layers, 16 routed experts) but everything else is R1's: its
config.json with the shape overridden, safetensors shards with an index, FP8 e4m3 weights with
128x128 `weight_scale_inv` blocks, one multi-token-prediction layer the loader must skip, and a
byte-level BPE tokenizer with R1's special tokens and R1's chat template. Everything is
deterministic: the same seed writes byte-identical files.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.weight_layout import (
    TensorSpec,
    layer_specs,
    model_specs,
    scale_name,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# safetensors and tokenizers are imported where files are written: the weights alone
# (`tiny_tensors`) need torch only, as on a GPU machine lent with nothing else
# (benchmarks/gpu_numerics.py).

TINY_SHAPE: dict[str, int] = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "first_k_dense_replace": 1,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "q_lora_rank": 128,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "intermediate_size": 512,
    "n_routed_experts": 16,
    "moe_intermediate_size": 128,
    "num_experts_per_tok": 4,
    "n_group": 4,
    "topk_group": 2,
    "n_shared_experts": 1,
    "num_nextn_predict_layers": 1,
}
DTYPES = ("fp32", "bf16", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn value
FP8_BLOCK = (128, 128)
TOKENIZER_VOCAB_SIZE = 4000

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# R1's added tokens, specials first so BOS is 0 and EOS is 1. `<think>`/`</think>` are added
# but not special in R1: decoding keeps them as text, and the API splits reasoning on them.
ADDED_TOKENS = (
    BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
)
NOT_SPECIAL = frozenset({"<think>", "</think>"})

_DATA = resources.files("serve.engine.reference") / "data"


def write_tiny_checkpoint(out: Path, seed: int = 0, dtype: str = "fp32", shards: int = 3) -> Path:
    """Write a tiny R1-architecture checkpoint into `out` and return `out`.

    dtype: "fp32", "bf16", or "fp8" (linear weights float8_e4m3fn with 128x128 block scales,
    the rest bf16, as R1 ships). shards: 1 writes `model.safetensors`, more write
    `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`. The tokenizer does
    not depend on `seed`; the weights do.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; choose one of {', '.join(DTYPES)}")
    if shards < 1:
        raise ValueError(f"shards={shards}; need at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer()
    (out / "tokenizer.json").write_text(tokenizer.to_str(pretty=True), encoding="utf-8")
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    cfg = tiny_config(tokenizer.get_vocab_size(with_added_tokens=True), dtype)
    _write_json(out / "config.json", cfg)
    _write_json(out / "generation_config.json", {
        "_from_model_config": True, "bos_token_id": 0, "eos_token_id": 1, "do_sample": True,
        "temperature": 0.6, "top_p": 0.95, "transformers_version": "4.46.3",
    })
    args = ModelArgs.from_dict(cfg, source=str(out / "config.json"))
    _write_shards(out, tiny_tensors(args, seed, dtype), shards)
    return out


def tiny_config(vocab_size: int, dtype: str) -> dict[str, Any]:
    """R1's config.json with the tiny shape; `quantization_config` only when dtype is fp8."""
    cfg: dict[str, Any] = json.loads((_DATA / "r1_config.json").read_text(encoding="utf-8"))
    cfg.update(TINY_SHAPE)
    cfg["vocab_size"] = vocab_size
    cfg["torch_dtype"] = "float32" if dtype == "fp32" else "bfloat16"
    if dtype != "fp8":
        del cfg["quantization_config"]
    # R1's auto_map points at modeling files this directory does not ship; without it,
    # transformers uses its built-in DeepseekV3 classes instead of asking for remote code.
    cfg.pop("auto_map", None)
    return cfg


def tokenizer_config() -> dict[str, Any]:
    """tokenizer_config.json as R1 ships it, with R1's chat template verbatim."""

    def added(content: str) -> dict[str, Any]:
        return {"__type": "AddedToken", "content": content, "lstrip": False,
                "normalized": True, "rstrip": False, "single_word": False}

    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": added(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": added(EOS),
        "legacy": True,
        "model_max_length": 16384,
        "pad_token": added(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": (_DATA / "chat_template.jinja").read_text(encoding="utf-8"),
    }


# ---------------------------------------------------------------------------------------------
# weights


def quantize_fp8(
    weight: torch.Tensor, block: tuple[int, int] = FP8_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's block quantization: per block scale = amax / 448, stored value = w / scale.

    Returns (float8_e4m3fn weight, float32 scale of shape [ceil(out/bo), ceil(in/bi)]); the
    scale is what the checkpoint calls `weight_scale_inv` (dequantized = fp8 x scale).
    """
    rows, cols = weight.shape
    bo, bi = block
    nbo, nbi = math.ceil(rows / bo), math.ceil(cols / bi)
    padded = torch.zeros(nbo * bo, nbi * bi, dtype=torch.float32)
    padded[:rows, :cols] = weight.float()
    blocks = padded.view(nbo, bo, nbi, bi)
    # An all-zero block would divide by zero; any positive scale quantizes it to zeros.
    scale = (blocks.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=1e-12)
    q = (blocks / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX)
    q = q.view(nbo * bo, nbi * bi)[:rows, :cols]
    return q.to(torch.float8_e4m3fn).contiguous(), scale.contiguous()


def mtp_specs(args: ModelArgs) -> list[TensorSpec]:
    """A few tensors of R1's multi-token-prediction layer, stored as layer num_hidden_layers."""
    layer = args.num_hidden_layers
    p, d = f"model.layers.{layer}", args.hidden_size
    return [
        TensorSpec(f"{p}.eh_proj.weight", (d, 2 * d), fp8=True),
        TensorSpec(f"{p}.enorm.weight", (d,), fp8=False),
        TensorSpec(f"{p}.hnorm.weight", (d,), fp8=False),
        TensorSpec(f"{p}.shared_head.norm.weight", (d,), fp8=False),
        *layer_specs(args, layer),
    ]


def _init(spec: TensorSpec, hidden: int, g: torch.Generator) -> torch.Tensor:
    """Values that keep activations O(1) and logits well separated (greedy is not tie-prone)."""
    name, shape = spec.name, spec.shape
    if name.endswith("e_score_correction_bias"):
        # Positive and large enough to change which experts win, as in the real model.
        return torch.rand(shape, generator=g) * 0.05
    noise = torch.randn(shape, generator=g)
    if name.endswith("embed_tokens.weight"):
        return noise
    if name == "lm_head.weight":
        return noise * (3.0 / math.sqrt(hidden))
    if name.endswith("mlp.gate.weight"):
        return noise / math.sqrt(hidden)
    if len(shape) == 1:
        return noise * 0.02 if name.endswith(".bias") else 1.0 + 0.05 * noise
    return noise / math.sqrt(shape[1])


def tiny_tensors(args: ModelArgs, seed: int, dtype: str) -> dict[str, torch.Tensor]:
    """Every tensor as the file stores it, in module order (scales right after their weight).

    The float32 master values come from one generator in the same order for every dtype, so
    the fp8 and bf16 checkpoints of a seed are roundings of its fp32 checkpoint.
    """
    g = torch.Generator().manual_seed(seed)
    stored: dict[str, torch.Tensor] = {}
    for spec in [*model_specs(args), *mtp_specs(args)]:
        w = _init(spec, args.hidden_size, g)
        if spec.name.endswith("e_score_correction_bias") or dtype == "fp32":
            stored[spec.name] = w.float()  # R1 keeps the routing bias in fp32
        elif dtype == "fp8" and spec.fp8:
            stored[spec.name], stored[scale_name(spec.name)] = quantize_fp8(w)
        else:
            stored[spec.name] = w.to(torch.bfloat16)
    return stored


def _write_shards(out: Path, tensors: dict[str, torch.Tensor], shards: int) -> None:
    from safetensors.torch import save_file

    meta = {"format": "pt"}
    if shards == 1:
        save_file(tensors, str(out / "model.safetensors"), metadata=meta)
        return
    names = list(tensors)
    if shards > len(names):
        raise ValueError(f"shards={shards} exceeds the {len(names)} tensors to store")
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    # Contiguous groups of about total/shards bytes, each non-empty, like HF's save_pretrained.
    groups: list[list[str]] = [[] for _ in range(shards)]
    done, shard = 0, 0
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        remaining_tensors = len(names) - i
        must_advance = remaining_tensors <= shards - 1 - shard
        if groups[shard] and (done >= total * (shard + 1) / shards or must_advance):
            shard += 1
        groups[shard].append(name)
        done += size
    weight_map: dict[str, str] = {}
    for k, group in enumerate(groups):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in group}, str(out / file), metadata=meta)
        weight_map.update(dict.fromkeys(group, file))
    _write_json(out / "model.safetensors.index.json", {
        "metadata": {"total_size": total},
        "weight_map": dict(sorted(weight_map.items())),
    })


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                    encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_tiny_tokenizer(vocab_size: int = TOKENIZER_VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE with R1's added tokens, trained on the shipped corpus; deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        # As R1's pre-tokenizer: digits in groups of at most three, runs of CJK kept apart.
        pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"[一-龥぀-ゟ゠-ヿ]+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(ADDED_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 0)],
    )
    # The trainer registers every added token as special; R1's think tags are not.
    data = json.loads(tok.to_str())
    for entry in data["added_tokens"]:
        if entry["content"] in NOT_SPECIAL:
            entry["special"] = False
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


_CJK = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自可过天能对着都好"
    "起多没小么心去之看学问题模型服务器数据计算今明推理思考答案"
)
_KANA = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねの"
    "はひふへほまみむめもやゆよらりるれろわをん"
)
_EMOJI = "😀😂🤔🚀🔥✨🎉👍🙏💡📈🧠🌍☕🍣🐍👩‍💻🇯🇵"
_CODE = (
    "def {a}({b}):\n    return {b} * {n}\n",
    "for {a} in range({n}):\n    {b}.append({a} ** 2)\n",
    'if {a} is None:\n    raise ValueError("{b} must be set")\n',
    '{{"{a}": {n}, "{b}": [{n}, {m}], "ok": true}}\n',
    "x = torch.zeros({n}, {m}, dtype=torch.float32)\n",
    "$ python -m {a}.{b} --port {n}\n",
    "\\frac{{{n}}}{{{m}}} + \\sqrt{{{n}}} = \\boxed{{{m}}}\n",
)


def _corpus(seed: int = 1234) -> Iterator[str]:
    """The shipped English text, then seeded lines of words, numbers, code, CJK and emoji."""
    text = (_DATA / "corpus.txt").read_text(encoding="utf-8")
    rng = random.Random(seed)
    words = text.split()
    idents = sorted({w.lower() for w in words if w.isalpha()})
    for _ in range(8):
        yield text
    for _ in range(3000):
        kind = rng.randrange(6)
        if kind <= 1:
            yield " ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) + "\n"
        elif kind == 2:
            yield rng.choice(_CODE).format(a=rng.choice(idents), b=rng.choice(idents),
                                           n=rng.randint(0, 9999), m=rng.randint(1, 99))
        elif kind == 3:
            yield " ".join(f"{rng.uniform(-1000, 1000):.{rng.randint(0, 3)}f}" for _ in range(6))
        elif kind == 4:
            yield "".join(rng.choice(_CJK + _KANA) for _ in range(rng.randint(4, 30))) + "。\n"
        else:
            yield " ".join(rng.choice(words) + rng.choice(_EMOJI) for _ in range(4)) + "\n"
