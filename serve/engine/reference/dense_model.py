"""The dense decoder of the distilled R1 models (Qwen2, Llama) as their config.json defines it.
Module paths equal the checkpoint's tensor names, so a loaded state dict goes straight in; the
engine drives it exactly as it drives `Transformer`."""

from __future__ import annotations

import torch
from torch import nn

from serve.engine.reference.dense_args import DenseArgs
from serve.engine.reference.forward_batch import ForwardBatch
from serve.engine.reference.gqa import GQA
from serve.engine.reference.moe import MLP
from serve.engine.reference.norm import RMSNorm
from serve.engine.reference.rope import RotaryEmbedding


class DenseBlock(nn.Module):
    """Pre-norm attention then pre-norm SwiGLU MLP, each with a residual."""

    def __init__(self, args: DenseArgs) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.self_attn = GQA(args)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.mlp = MLP(args.hidden_size, args.intermediate_size)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, rope: RotaryEmbedding,
                cos_sin: tuple[torch.Tensor, torch.Tensor], cache: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), batch, rope, cos_sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class DenseDecoder(nn.Module):
    def __init__(self, args: DenseArgs) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = nn.ModuleList(DenseBlock(args) for _ in range(args.num_hidden_layers))
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)


class DenseTransformer(nn.Module):
    """The causal LM. `forward` runs one engine step over a `ForwardBatch`."""

    def __init__(self, args: DenseArgs) -> None:
        super().__init__()
        self.args = args
        self.model = DenseDecoder(args)
        self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        if args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rope = RotaryEmbedding(args.rope, args.head_dim)

    def expert_counts(self) -> list[list[int]]:
        """A dense model routes nothing: no MoE layers."""
        return []

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, kv_cache: torch.Tensor) -> torch.Tensor:
        """Run every token of `batch`; return logits [B, V] (float32) at `batch.logits_index`.

        kv_cache: [layers, slots, 2 * num_key_value_heads * head_dim]; this step's keys and
        values are written at `batch.slot_mapping` in every layer.
        """
        x = self.model.embed_tokens(batch.input_ids)
        cos_sin = self.rope.cos_sin(batch.positions)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, batch, self.rope, cos_sin, kv_cache[i])
        x = self.model.norm(x[batch.logits_index])
        return self.lm_head(x).float()
