"""Grouped-query attention (Qwen2, Llama) over a paged cache of regular keys and values.

Each cache slot holds one token's keys for every KV head followed by its values for every KV
head: [2 * num_key_value_heads * head_dim]. Query heads share KV heads in contiguous groups
(query head i reads KV head i // (heads / kv_heads)), as transformers' `repeat_kv` pairs them.
"""

from __future__ import annotations

import torch
from torch import nn

from serve.engine.reference.dense_args import DenseArgs
from serve.engine.reference.forward_batch import AttentionGroup, ForwardBatch
from serve.engine.reference.rope import RotaryEmbedding


class GQA(nn.Module):
    def __init__(self, args: DenseArgs) -> None:
        super().__init__()
        d, self.n_heads, self.n_kv_heads = (args.hidden_size, args.num_attention_heads,
                                            args.num_key_value_heads)
        self.head_dim = args.head_dim
        self.softmax_scale = args.softmax_scale
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=args.qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=args.qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=args.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=args.o_bias)

    def forward(
        self,
        x: torch.Tensor,
        batch: ForwardBatch,
        rope: RotaryEmbedding,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        cache: torch.Tensor,
    ) -> torch.Tensor:
        """x [T, D] -> [T, D]. Writes this step's keys and values into `cache`
        [slots, 2 * KVH * hd] first."""
        t = x.shape[0]
        cos, sin = cos_sin
        q = rope.apply(self.q_proj(x).view(t, self.n_heads, self.head_dim), cos, sin)
        k = rope.apply(self.k_proj(x).view(t, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(t, self.n_kv_heads, self.head_dim)
        cache[batch.slot_mapping] = torch.cat([k, v], dim=1).flatten(1).to(cache.dtype)
        out = q.new_empty(t, self.n_heads, self.head_dim)
        for group in batch.groups:
            out[group.query_index] = self._attend(q, cache, group)
        return self.o_proj(out.view(t, self.n_heads * self.head_dim))

    def _attend(self, q: torch.Tensor, cache: torch.Tensor, g: AttentionGroup) -> torch.Tensor:
        """Attention of one group's queries over their sequences' cached keys and values."""
        kvh, hd = self.n_kv_heads, self.head_dim
        # [B, Q, KVH, heads per KV head, hd]
        q = q[g.query_index].view(g.batch, g.queries, kvh, self.n_heads // kvh, hd)
        kv = cache[g.kv_slots].to(q.dtype).view(g.batch, -1, 2, kvh, hd)  # [B, K, 2, KVH, hd]
        k, v = kv[:, :, 0], kv[:, :, 1]
        scores = torch.einsum("bqgrd,bkgd->bgrqk", q, k) * self.softmax_scale
        scores = scores.masked_fill(~g.mask[:, None, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.einsum("bgrqk,bkgd->bqgrd", probs, v)
        return out.reshape(g.batch * g.queries, self.n_heads, hd)
