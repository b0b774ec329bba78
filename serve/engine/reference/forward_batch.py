"""`ForwardBatch`: what one model step computes, as flat tensors built by the model runner."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionGroup:
    """Sequences whose attention runs as one padded batch.

    Either one sequence with several new tokens (prefill chunk) or several sequences with one
    new token each (decode), so queries never need padding.
    """

    query_index: torch.Tensor  # [Bg * Qg] positions in the flat token dimension
    kv_slots: torch.Tensor  # [Bg, K] flat KV-cache slots of each sequence's context, padded
    mask: torch.Tensor  # [Bg, Qg, K] True where the query may attend
    batch: int  # Bg
    queries: int  # Qg


@dataclass(frozen=True)
class ForwardBatch:
    """Flat tokens of several sequences: prefill chunks and decode tokens together."""

    input_ids: torch.Tensor  # [T] int64
    positions: torch.Tensor  # [T] int64, position of each token in its sequence
    slot_mapping: torch.Tensor  # [T] int64, flat cache slot each token's latent is written to
    groups: tuple[AttentionGroup, ...]
    logits_index: torch.Tensor  # [B] flat index of the tokens whose next-token logits we need
