"""DeepSeek-V3/R1 as its config.json defines it. Module paths equal the checkpoint's tensor
names (Hugging Face layout), so a loaded state dict goes straight in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from serve.engine.reference.forward_batch import ForwardBatch
from serve.engine.reference.mla import MLA
from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.moe import MLP, MoE
from serve.engine.reference.norm import RMSNorm
from serve.engine.reference.rope import RotaryEmbedding


class Block(nn.Module):
    """Pre-norm attention then pre-norm MLP (dense) or MoE, each with a residual."""

    def __init__(self, args: ModelArgs, layer: int,
                 local_experts: Sequence[int] | None = None) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.self_attn = MLA(args)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        if args.is_moe_layer(layer):
            self.mlp: nn.Module = MoE(args, layer - args.first_k_dense_replace, local_experts)
        else:
            self.mlp = MLP(args.hidden_size, args.intermediate_size)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, rope: RotaryEmbedding,
                cos_sin: tuple[torch.Tensor, torch.Tensor], cache: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), batch, rope, cos_sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, args: ModelArgs,
                 local_experts: Callable[[int], Sequence[int]] | None = None) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = nn.ModuleList(
            Block(args, i, None if local_experts is None or not args.is_moe_layer(i)
                  else local_experts(i)) for i in range(args.num_hidden_layers))
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)


class Transformer(nn.Module):
    """The causal LM. `forward` runs one engine step over a `ForwardBatch`.

    `local_experts(layer)` names the routed experts this process holds (all when None).
    """

    def __init__(self, args: ModelArgs,
                 local_experts: Callable[[int], Sequence[int]] | None = None) -> None:
        super().__init__()
        self.args = args
        self.model = Decoder(args, local_experts)
        self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        if args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rope = RotaryEmbedding(args.rope, args.qk_rope_head_dim)

    def expert_counts(self) -> list[list[int]]:
        """Tokens routed to each expert, per MoE layer, since the model was built."""
        return [[0] * self.args.n_routed_experts if layer.mlp.token_counts is None
                else layer.mlp.token_counts.tolist()
                for layer in self.model.layers if isinstance(layer.mlp, MoE)]

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, kv_cache: torch.Tensor) -> torch.Tensor:
        """Run every token of `batch`; return logits [B, V] (float32) at `batch.logits_index`.

        kv_cache: [layers, slots, kv_lora_rank + qk_rope_head_dim]; this step's latents are
        written at `batch.slot_mapping` in every layer.
        """
        x = self.model.embed_tokens(batch.input_ids)
        cos_sin = self.rope.cos_sin(batch.positions)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, batch, self.rope, cos_sin, kv_cache[i])
        x = self.model.norm(x[batch.logits_index])
        return self.lm_head(x).float()
