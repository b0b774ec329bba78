"""Expert-parallel load balancing (EPLB): place redundant expert replicas so ranks share load.

The algorithm follows the shape of DeepSeek's EPLB, per MoE layer:

  (a) pack the expert groups onto nodes so node loads are balanced, each node taking the same
      number of groups, which keeps a group's experts (and so most of a token's group-limited
      traffic) inside one node;
  (b) within each node, hand out the node's spare slots one at a time to the expert whose load
      per replica is highest;
  (c) pack the node's replicas onto its ranks, heaviest first onto the least loaded rank that
      still has a free slot (and, while it can, one not already holding that expert), so every
      rank ends with exactly `slots_per_rank` replicas.

When the groups do not divide over the nodes, the whole cluster is treated as one node
("global" balancing). Group-to-node packing cannot split a group, so when one group alone
carries more than a node's share of the load, (a) caps the best achievable balance; the
default policy "auto" therefore computes both plans for each layer and keeps the hierarchical
one unless the global one has a strictly lower maximum rank load.

Everything here is deterministic: ties break on the lower index.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Literal

import numpy as np

from cluster.expert_placement import ExpertPlacement

Policy = Literal["auto", "hierarchical", "global"]
POLICIES: tuple[Policy, ...] = ("auto", "hierarchical", "global")


def rebalance(counts: np.ndarray, num_ranks: int, num_nodes: int, num_redundant: int,
              num_groups: int, *, policy: Policy = "auto") -> ExpertPlacement:
    """A placement of `E + num_redundant` expert replicas per layer over `num_ranks` EP ranks.

    counts: tokens routed to each logical expert, shape [MoE layers, E], non-negative.
    num_ranks: EP size; must split evenly over `num_nodes`, and `E + num_redundant` must split
        evenly over it (every rank holds the same number of slots).
    num_groups: expert groups of the router (R1's `n_group`, 8); groups are contiguous runs
        of E / num_groups experts.
    policy: "hierarchical" (groups pinned to nodes where they divide evenly, else global),
        "global" (one pool), or "auto" (per layer, the better of the two; see module doc).
    """
    counts = _check_counts(counts)
    num_layers, num_experts = counts.shape
    slots_per_rank = _check_layout(num_experts, num_ranks, num_nodes, num_redundant, num_groups)
    if policy not in POLICIES:
        raise ValueError(f"EPLB policy must be one of {POLICIES}, got {policy!r}")
    # One node holds everything, or groups cannot be pinned: the hierarchy adds nothing.
    hierarchical_possible = num_nodes > 1 and num_groups % num_nodes == 0
    table: list[tuple[int, ...]] = []
    for layer in range(num_layers):
        load = [float(x) for x in counts[layer]]
        candidates = []
        if hierarchical_possible and policy in ("auto", "hierarchical"):
            candidates.append(_place_layer(load, num_ranks, num_nodes, slots_per_rank, num_groups))
        if not candidates or policy == "auto":
            candidates.append(_place_layer(load, num_ranks, 1, slots_per_rank, 1))
        # min() keeps the first (hierarchical) candidate on ties.
        best = min(candidates, key=lambda ranks: _max_rank_load(load, ranks))
        table.append(tuple(e for rank in best for e in rank))
    return ExpertPlacement(num_logical=num_experts, num_ranks=num_ranks,
                           slots_per_rank=slots_per_rank, physical_to_logical=tuple(table))


def max_mean_ratio(placement: ExpertPlacement, counts: np.ndarray) -> float:
    """Mean over MoE layers of (max rank load / mean rank load); 1.0 is perfect balance.

    The slowest rank sets the pace of every all-to-all, so this is the factor by which the MoE
    step is slower than a perfectly balanced one.
    """
    return float(layer_max_mean_ratios(placement, counts).mean())


def layer_max_mean_ratios(placement: ExpertPlacement, counts: np.ndarray) -> np.ndarray:
    """Max rank load / mean rank load for each MoE layer; layers with no load count as 1.0."""
    loads = placement.rank_loads(counts)
    means = loads.mean(axis=1)
    return np.divide(loads.max(axis=1), means, out=np.ones_like(means), where=means > 0)


def synthetic_counts(num_layers: int, num_experts: int, *, seed: int = 0, skew: float = 1.0,
                     tokens: int = 8192, top_k: int = 8) -> np.ndarray:
    """A seeded, Zipf-like expert load: int64 array [num_layers, num_experts].

    Each layer ranks its experts by a fresh random permutation and gives the expert of rank k
    a share proportional to 1 / k**skew; `tokens * top_k` routing choices are then drawn from
    those shares, so counts carry sampling noise like a real profile. skew 0 is uniform; at
    skew 1.0 over 256 experts the hottest expert gets ~16% of all choices, hotter than top-8
    routing even allows (at most 1/8), so it is a harsh test rather than a typical one.
    """
    if num_layers < 1 or num_experts < 1 or tokens < 1 or top_k < 1:
        raise ValueError("synthetic load needs layers, experts, tokens and top_k >= 1")
    if skew < 0:
        raise ValueError(f"synthetic load skew must be >= 0, got {skew}")
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, num_experts + 1, dtype=np.float64) ** skew
    rows = []
    for _ in range(num_layers):
        p = shares[rng.permutation(num_experts)]
        rows.append(rng.multinomial(tokens * top_k, p / p.sum()))
    return np.stack(rows).astype(np.int64)


def _check_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] < 1 or counts.shape[1] < 1:
        raise ValueError(f"expert counts must be a non-empty [layers, experts] table, "
                         f"got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("expert counts must be finite and non-negative")
    return counts


def _check_layout(num_experts: int, num_ranks: int, num_nodes: int, num_redundant: int,
                  num_groups: int) -> int:
    """Validate the EP layout and return slots per rank."""
    if num_ranks < 1 or num_nodes < 1:
        raise ValueError(f"EP size and node count must be >= 1, got {num_ranks} and {num_nodes}")
    if num_ranks % num_nodes:
        raise ValueError(f"EP size {num_ranks} does not split evenly over {num_nodes} nodes")
    if num_redundant < 0:
        raise ValueError(f"redundant experts must be >= 0, got {num_redundant}")
    num_slots = num_experts + num_redundant
    if num_slots % num_ranks:
        fit = -(-num_slots // num_ranks) * num_ranks - num_experts
        raise ValueError(
            f"{num_experts} experts + {num_redundant} redundant = {num_slots} slots do not "
            f"split evenly over EP size {num_ranks}; use a redundant count that makes the "
            f"total a multiple of {num_ranks} (e.g. {fit})")
    if num_groups < 1 or num_experts % num_groups:
        raise ValueError(f"{num_experts} experts do not split into {num_groups} equal groups")
    return num_slots // num_ranks


def _place_layer(load: Sequence[float], num_ranks: int, num_nodes: int, slots_per_rank: int,
                 num_groups: int) -> list[list[int]]:
    """One layer's plan: for each rank, the logical experts of its slots (sorted)."""
    group_size = len(load) // num_groups
    group_loads = [sum(load[g * group_size:(g + 1) * group_size]) for g in range(num_groups)]
    node_of_group = _balanced_packing(group_loads, num_nodes, num_groups // num_nodes)
    ranks_per_node = num_ranks // num_nodes
    ranks: list[list[int]] = []
    for node in range(num_nodes):
        experts = [e for g in range(num_groups) if node_of_group[g] == node
                   for e in range(g * group_size, (g + 1) * group_size)]
        ranks += _pack_node(load, experts, ranks_per_node, slots_per_rank)
    return ranks


def _pack_node(load: Sequence[float], experts: list[int], num_ranks: int,
               slots_per_rank: int) -> list[list[int]]:
    """Steps (b) and (c) for one node: replicate its hottest experts, then pack to ranks."""
    replicas = _replicate([load[e] for e in experts], num_ranks * slots_per_rank)
    items = [(load[e] / n, e) for e, n in zip(experts, replicas, strict=True) for _ in range(n)]
    order = sorted(range(len(items)), key=lambda i: (-items[i][0], i))
    # Heap of (rank load, rank) over ranks that still have a free slot.
    open_ranks = [(0.0, r) for r in range(num_ranks)]
    ranks: list[list[int]] = [[] for _ in range(num_ranks)]
    for i in order:
        weight, expert = items[i]
        # A second copy of an expert on one rank only wastes memory; skip such ranks while a
        # rank without it has room.
        skipped = []
        while len(open_ranks) > 1 and expert in ranks[open_ranks[0][1]]:
            skipped.append(heapq.heappop(open_ranks))
        rank_load, rank = heapq.heappop(open_ranks)
        for entry in skipped:
            heapq.heappush(open_ranks, entry)
        ranks[rank].append(expert)
        if len(ranks[rank]) < slots_per_rank:
            heapq.heappush(open_ranks, (rank_load + weight, rank))
    return [sorted(r) for r in ranks]


def _replicate(load: Sequence[float], num_slots: int) -> list[int]:
    """Replicas per expert: one each, then every spare slot to the highest load per replica."""
    counts = [1] * len(load)
    heap = [(-w, i) for i, w in enumerate(load)]
    heapq.heapify(heap)
    for _ in range(num_slots - len(load)):
        _, i = heapq.heappop(heap)
        counts[i] += 1
        heapq.heappush(heap, (-load[i] / counts[i], i))
    return counts


def _balanced_packing(weights: Sequence[float], num_packs: int, capacity: int) -> list[int]:
    """Pack index per item: heaviest first onto the lightest pack with fewer than `capacity`."""
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    open_packs = [(0.0, p) for p in range(num_packs)]
    sizes = [0] * num_packs
    pack_of = [0] * len(weights)
    for i in order:
        pack_load, pack = heapq.heappop(open_packs)
        pack_of[i] = pack
        sizes[pack] += 1
        if sizes[pack] < capacity:
            heapq.heappush(open_packs, (pack_load + weights[i], pack))
    return pack_of


def _max_rank_load(load: Sequence[float], ranks: list[list[int]]) -> float:
    replicas: dict[int, int] = {}
    for rank in ranks:
        for e in rank:
            replicas[e] = replicas.get(e, 0) + 1
    return max(sum(load[e] / replicas[e] for e in rank) for rank in ranks)
