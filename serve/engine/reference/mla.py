"""Multi-head latent attention (DeepSeek-V2/V3), in the absorbed form over a paged latent cache.

The cache holds, per token and layer, only the normalized KV latent (`kv_lora_rank` values) and
the shared rotated key (`qk_rope_head_dim` values). Queries are projected into the latent space
through the key half of `kv_b_proj` and outputs leave it through the value half, so keys and
values are never expanded per head.
"""

from __future__ import annotations

import torch
from torch import nn

from serve.engine.reference.forward_batch import AttentionGroup, ForwardBatch
from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.norm import RMSNorm
from serve.engine.reference.rope import RotaryEmbedding


class MLA(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        d, h = args.hidden_size, args.num_attention_heads
        self.n_heads = h
        self.nope_dim, self.rope_dim = args.qk_nope_head_dim, args.qk_rope_head_dim
        self.v_dim, self.kv_lora_rank = args.v_head_dim, args.kv_lora_rank
        self.q_lora_rank = args.q_lora_rank
        self.softmax_scale = args.softmax_scale
        bias = args.attention_bias
        if args.q_lora_rank is None:
            self.q_proj = nn.Linear(d, h * args.qk_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(d, args.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(args.q_lora_rank, args.rms_norm_eps)
            self.q_b_proj = nn.Linear(args.q_lora_rank, h * args.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, args.kv_cache_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(args.kv_lora_rank, args.rms_norm_eps)
        self.kv_b_proj = nn.Linear(args.kv_lora_rank, h * (self.nope_dim + self.v_dim), bias=False)
        self.o_proj = nn.Linear(h * self.v_dim, d, bias=bias)

    def _absorbed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """kv_b_proj split into W_UK [H, nope, C] and W_UV [H, v, C] (C = kv_lora_rank)."""
        w = self.kv_b_proj.weight.view(self.n_heads, self.nope_dim + self.v_dim, self.kv_lora_rank)
        return w[:, : self.nope_dim], w[:, self.nope_dim :]

    def forward(
        self,
        x: torch.Tensor,
        batch: ForwardBatch,
        rope: RotaryEmbedding,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        cache: torch.Tensor,
    ) -> torch.Tensor:
        """x [T, D] -> [T, D]. Writes this step's latents into `cache` [slots, C + R] first."""
        t = x.shape[0]
        cos, sin = cos_sin
        if self.q_lora_rank is None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(t, self.n_heads, self.nope_dim + self.rope_dim)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        kv = self.kv_a_proj_with_mqa(x)
        c_kv, k_pe = kv.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent = torch.cat([self.kv_a_layernorm(c_kv), rope.apply(k_pe, cos, sin)], dim=-1)
        cache[batch.slot_mapping] = latent.to(cache.dtype)

        w_uk, w_uv = self._absorbed()
        # q in latent space: [T, H, C + R], matching the cache's [C | R] layout
        q_lat = torch.cat([torch.einsum("thd,hdc->thc", q_nope, w_uk),
                           rope.apply(q_pe, cos, sin)], dim=-1)
        out_lat = q_lat.new_empty(t, self.n_heads, self.kv_lora_rank)
        for group in batch.groups:
            out_lat[group.query_index] = self._attend(q_lat, cache, group)
        out = torch.einsum("thc,hvc->thv", out_lat, w_uv)
        return self.o_proj(out.reshape(t, self.n_heads * self.v_dim))

    def _attend(self, q_lat: torch.Tensor, cache: torch.Tensor, g: AttentionGroup) -> torch.Tensor:
        """Attention of one group's queries over their sequences' cached latents."""
        q = q_lat[g.query_index].view(g.batch, g.queries, self.n_heads, -1)  # [B, Q, H, C+R]
        kv = cache[g.kv_slots].to(q.dtype)  # [B, K, C+R]
        scores = torch.einsum("bqhc,bkc->bhqk", q, kv) * self.softmax_scale
        scores = scores.masked_fill(~g.mask[:, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.einsum("bhqk,bkc->bqhc", probs, kv[..., : self.kv_lora_rank])
        return out.reshape(g.batch * g.queries, self.n_heads, self.kv_lora_rank)
