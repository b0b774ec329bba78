"""Mixture of experts: the noaux_tc gate, routed experts, shared experts."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from cluster.expert_dispatch import ExpertDispatcher
from serve.engine.reference.model_args import ModelArgs


class MLP(nn.Module):
    """SwiGLU feed-forward: the dense layers, each routed expert and the shared experts."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, inter_dim, bias=False)
        self.up_proj = nn.Linear(dim, inter_dim, bias=False)
        self.down_proj = nn.Linear(inter_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """Sigmoid scores; the correction bias picks experts but does not weight them.

    Experts are first limited to the `topk_group` groups with the highest sum of their top-2
    biased scores, then the top `num_experts_per_tok` are taken among those.
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_experts, self.top_k = args.n_routed_experts, args.num_experts_per_tok
        self.n_group, self.topk_group = args.n_group, args.topk_group
        self.norm_topk_prob = args.norm_topk_prob
        self.routed_scaling_factor = args.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.hidden_size))
        self.e_score_correction_bias = nn.Parameter(torch.zeros(args.n_routed_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, D] -> (weights [T, k] float32, expert ids [T, k])."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        biased = scores + self.e_score_correction_bias
        if self.n_group > 1:
            grouped = biased.view(-1, self.n_group, self.n_experts // self.n_group)
            group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
            groups = group_scores.topk(self.topk_group, dim=-1, sorted=False)[1]
            keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, groups, True)
            biased = grouped.masked_fill(~keep[..., None], float("-inf")).flatten(1)
        ids = biased.topk(self.top_k, dim=-1, sorted=False)[1]
        weights = scores.gather(1, ids)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scaling_factor, ids


class MoE(nn.Module):
    """Routed experts held by this process plus the shared experts.

    Without expert parallelism every expert is local. With it, `dispatcher` (set by the rank
    worker) moves each token to the ranks holding its experts and brings the outputs back;
    `experts` then holds only this rank's experts. Keys are global expert ids, so checkpoint
    names map directly.
    """

    def __init__(self, args: ModelArgs, moe_index: int = 0,
                 local_experts: Iterable[int] | None = None) -> None:
        super().__init__()
        ids = range(args.n_routed_experts) if local_experts is None else local_experts
        self.moe_index = moe_index  # ordinal among MoE layers, for the dispatcher's tables
        self.gate = Gate(args)
        self.experts = nn.ModuleDict(
            {str(e): MLP(args.hidden_size, args.moe_intermediate_size) for e in ids})
        self.shared_experts = (
            MLP(args.hidden_size, args.moe_intermediate_size * args.n_shared_experts)
            if args.n_shared_experts else None)
        self.dispatcher: ExpertDispatcher | None = None
        # Tokens this process routed to each expert (for EPLB); summed over ranks by the engine.
        self.token_counts: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = self.gate(x)
        t, k = ids.shape
        counts = torch.bincount(ids.flatten(), minlength=self.gate.n_experts)
        self.token_counts = counts if self.token_counts is None else self.token_counts + counts
        if self.dispatcher is None:
            y = self.apply_experts(x.repeat_interleave(k, dim=0), ids.flatten())
        else:
            d = self.dispatcher.dispatch(self.moe_index, x, ids)
            y = self.dispatcher.combine(self.apply_experts(d.x, d.expert), d)
        out = (y.view(t, k, x.shape[1]) * weights.to(x.dtype)[..., None]).sum(dim=1)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out

    def apply_experts(self, rows: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """rows [N, D], expert [N] -> expert[i](rows[i]). Rows are sorted by expert so each
        expert runs once on all its rows."""
        order = expert.argsort(stable=True)
        counts = torch.bincount(expert, minlength=self.gate.n_experts).tolist()
        sorted_rows = rows[order]
        outs, start = [], 0
        for e, n in enumerate(counts):
            if n:
                outs.append(self.experts[str(e)](sorted_rows[start:start + n]))
                start += n
        out = torch.empty_like(rows)
        if outs:
            out[order] = torch.cat(outs)
        return out
