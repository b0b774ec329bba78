"""Expert-parallel dispatch and combine: tokens travel by all_to_all to the ranks that hold
their selected experts, and the expert outputs travel back.

Every rank calls `dispatch` and `combine` for every MoE layer of every step, with zero tokens
if it has none, so the collectives of all ranks always pair up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class LayerRouting:
    """Where each logical expert of one MoE layer lives, as lookup tensors."""

    replica_slots: torch.Tensor  # [E, R] physical slots of each logical expert (padded)
    num_replicas: torch.Tensor  # [E]
    slots_per_rank: int

    @classmethod
    def from_physical(cls, physical_to_logical: Sequence[int], num_logical: int,
                      slots_per_rank: int) -> LayerRouting:
        replicas: list[list[int]] = [[] for _ in range(num_logical)]
        for slot, expert in enumerate(physical_to_logical):
            replicas[expert].append(slot)
        if any(not r for r in replicas):
            missing = [e for e, r in enumerate(replicas) if not r]
            raise ValueError(f"logical experts without a physical slot: {missing[:8]}")
        width = max(len(r) for r in replicas)
        table = torch.tensor([r + r[:1] * (width - len(r)) for r in replicas], dtype=torch.long)
        counts = torch.tensor([len(r) for r in replicas], dtype=torch.long)
        return cls(table, counts, slots_per_rank)


@dataclass(frozen=True)
class Dispatched:
    """Assignments received by this rank, and how to send their results back."""

    x: torch.Tensor  # [M, D] token vectors to run through local experts
    expert: torch.Tensor  # [M] logical expert of each received row
    order: torch.Tensor  # [T*k] sort of this rank's (token, choice) assignments by destination
    send_counts: list[int]
    recv_counts: list[int]


class ExpertDispatcher:
    """All-to-all exchange of one rank's MoE assignments within a process group."""

    def __init__(self, routing: Sequence[LayerRouting], group: dist.ProcessGroup | None = None,
                 rank: int | None = None) -> None:
        self.routing = list(routing)
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group) if rank is None else rank
        self.bytes_sent = 0  # payload bytes this rank sent to other ranks, for the benchmarks

    def dispatch(self, moe_index: int, x: torch.Tensor, ids: torch.Tensor) -> Dispatched:
        """x [T, D], ids [T, k] logical experts -> the rows this rank must compute."""
        r = self.routing[moe_index]
        t, k = ids.shape
        flat = ids.flatten()
        # Spread a hot expert's tokens over its replicas; the choice is deterministic.
        pick = (torch.arange(t * k) + self.rank * 7919) % r.num_replicas[flat]
        slot = r.replica_slots[flat, pick]
        dest = slot // r.slots_per_rank
        order = dest.argsort(stable=True)
        send_counts = torch.bincount(dest, minlength=self.world)
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts, group=self.group)
        send_counts_l, recv_counts_l = send_counts.tolist(), recv_counts.tolist()
        # The expert id rides along as one extra column (exact in float32 below 2**24).
        payload = torch.cat([x[order // k], flat[order].to(x.dtype)[:, None]], dim=1)
        received = payload.new_empty(sum(recv_counts_l), payload.shape[1])
        dist.all_to_all_single(received, payload.contiguous(), recv_counts_l, send_counts_l,
                               group=self.group)
        self._count(send_counts_l, payload)
        return Dispatched(received[:, :-1], received[:, -1].long(), order, send_counts_l,
                          recv_counts_l)

    def combine(self, y: torch.Tensor, d: Dispatched) -> torch.Tensor:
        """Expert outputs [M, D] of the received rows -> [T*k, D] in (token, choice) order."""
        back = y.new_empty(sum(d.send_counts), y.shape[1])
        dist.all_to_all_single(back, y.contiguous(), d.send_counts, d.recv_counts,
                               group=self.group)
        self._count(d.recv_counts, y)
        out = torch.empty_like(back)
        out[d.order] = back
        return out

    def _count(self, counts: list[int], rows: torch.Tensor) -> None:
        """Bytes of the rows that leave this rank (rows for itself never touch the wire)."""
        row_bytes = rows.shape[1] * rows.element_size()
        self.bytes_sent += (sum(counts) - counts[self.rank]) * row_bytes
