"""`ModelRunner`: owns the paged latent KV cache and turns scheduled work into model steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from serve.engine.reference.forward_batch import AttentionGroup, ForwardBatch
from serve.engine.reference.model import Transformer


@dataclass(frozen=True)
class StepItem:
    """One sequence's share of a step: compute `token_ids` at positions start, start+1, ..."""

    token_ids: Sequence[int]
    start: int  # tokens of this sequence already in the KV cache
    page_table: Sequence[int]  # KV pages covering positions [0, start + len(token_ids))


class ModelRunner:
    def __init__(self, model: Transformer, num_pages: int, page_size: int,
                 cache_dtype: torch.dtype = torch.float32) -> None:
        self.model = model
        self.page_size = page_size
        self.num_pages = num_pages
        args = model.args
        # One flat slot per (page, offset); a token's latent lives at page * page_size + offset.
        self.kv_cache = torch.zeros(args.num_hidden_layers, num_pages * page_size,
                                    args.kv_cache_dim, dtype=cache_dtype)
        self._offsets = torch.arange(page_size)

    def _slots(self, page_table: Sequence[int], length: int) -> torch.Tensor:
        pages = torch.tensor(page_table[: -(-length // self.page_size)], dtype=torch.long)
        return (pages[:, None] * self.page_size + self._offsets).flatten()[:length]

    def build_batch(self, items: Sequence[StepItem]) -> ForwardBatch:
        """Flatten the items; prefill chunks attend alone, decode tokens attend together."""
        ids: list[int] = []
        positions: list[int] = []
        slot_mapping: list[torch.Tensor] = []
        logits_index: list[int] = []
        groups: list[AttentionGroup] = []
        decode: list[tuple[int, torch.Tensor]] = []  # (flat index, context slots)
        for item in items:
            n, first = len(item.token_ids), len(ids)
            end = item.start + n
            assert n > 0 and len(item.page_table) * self.page_size >= end
            ids.extend(item.token_ids)
            positions.extend(range(item.start, end))
            context = self._slots(item.page_table, end)
            slot_mapping.append(context[item.start:])
            logits_index.append(first + n - 1)
            if n == 1:
                decode.append((first, context))
                continue
            pos = torch.arange(item.start, end)
            groups.append(AttentionGroup(
                query_index=torch.arange(first, first + n), kv_slots=context[None],
                mask=(torch.arange(end)[None, :] <= pos[:, None])[None], batch=1, queries=n))
        if decode:
            lengths = torch.tensor([len(c) for _, c in decode])
            kv_slots = torch.nn.utils.rnn.pad_sequence([c for _, c in decode], batch_first=True)
            mask = torch.arange(kv_slots.shape[1])[None, :] < lengths[:, None]
            groups.append(AttentionGroup(
                query_index=torch.tensor([i for i, _ in decode]), kv_slots=kv_slots,
                mask=mask[:, None, :], batch=len(decode), queries=1))
        return ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.long),
            positions=torch.tensor(positions, dtype=torch.long),
            slot_mapping=torch.cat(slot_mapping) if items else torch.zeros(0, dtype=torch.long),
            groups=tuple(groups),
            logits_index=torch.tensor(logits_index, dtype=torch.long),
        )

    def run(self, items: Sequence[StepItem]) -> torch.Tensor:
        """Logits [len(items), V] for the token after each item's last new token. With no items
        the model still runs (on zero tokens): expert-parallel ranks step in lockstep."""
        return self.model(self.build_batch(items), self.kv_cache)
