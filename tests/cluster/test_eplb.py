"""EPLB on synthetic R1-scale loads: balance targets, invariants and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.eplb import max_mean_ratio, rebalance, synthetic_counts
from cluster.expert_placement import contiguous

R1_EXPERTS, R1_GROUPS, R1_MOE_LAYERS = 256, 8, 58


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r1_scale_target_at_ep32_over_4_nodes_with_32_redundant(seed: int) -> None:
    # Zipf exponent 1.0 over a random permutation per layer: the hottest expert gets ~16% of
    # the tokens, five times a rank's fair share, so it must be spread over several ranks.
    counts = synthetic_counts(R1_MOE_LAYERS, R1_EXPERTS, seed=seed, skew=1.0)
    placement = rebalance(counts, num_ranks=32, num_nodes=4, num_redundant=32,
                          num_groups=R1_GROUPS)
    ratio = max_mean_ratio(placement, counts)
    baseline = max_mean_ratio(contiguous(R1_EXPERTS, 32, R1_MOE_LAYERS), counts)
    assert ratio <= 1.10
    assert ratio < baseline / 4  # contiguous is ~6x here


def _dirichlet_counts(num_layers: int, seed: int) -> np.ndarray:
    """A second load family: Dirichlet shares, a few hot experts and a long tail."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(R1_EXPERTS, 0.3), size=num_layers)
    return np.stack([rng.multinomial(65_536, s) for s in shares])


_LAYOUTS = [(8, 1), (8, 2), (8, 4), (8, 8), (16, 1), (16, 2), (16, 4), (16, 8),
            (32, 2), (32, 4), (32, 8), (64, 4), (64, 8)]


@pytest.mark.parametrize(("ep", "nodes"), _LAYOUTS)
@pytest.mark.parametrize("load", ["zipf-0.6", "zipf-1.0", "zipf-1.3", "dirichlet"])
def test_never_worse_than_contiguous(ep: int, nodes: int, load: str) -> None:
    layers = 12
    counts = (_dirichlet_counts(layers, seed=ep + nodes) if load == "dirichlet"
              else synthetic_counts(layers, R1_EXPERTS, seed=ep * nodes,
                                    skew=float(load.split("-")[1])))
    baseline = max_mean_ratio(contiguous(R1_EXPERTS, ep, layers), counts)
    for redundant in (0, ep):
        ratio = max_mean_ratio(rebalance(counts, ep, nodes, redundant, R1_GROUPS), counts)
        assert ratio <= baseline + 1e-9, (redundant, ratio, baseline)
    # With one spare slot per rank, the skewed loads come close to even.
    if load != "zipf-1.3" or ep <= 32:
        assert max_mean_ratio(rebalance(counts, ep, nodes, ep, R1_GROUPS), counts) <= 1.25


def test_placement_invariants() -> None:
    counts = synthetic_counts(6, R1_EXPERTS, seed=5, skew=1.0)
    p = rebalance(counts, num_ranks=32, num_nodes=4, num_redundant=32, num_groups=R1_GROUPS)
    assert (p.num_logical, p.num_ranks, p.slots_per_rank, p.num_layers) == (256, 32, 9, 6)
    replicas = p.replica_counts()
    assert (replicas >= 1).all() and (replicas.sum(axis=1) == 288).all()
    # Every token is still counted exactly once.
    assert np.allclose(p.rank_loads(counts).sum(axis=1), counts.sum(axis=1))
    # Hot experts get the replicas: the hottest expert of each layer has the most.
    hottest = counts.argmax(axis=1)
    assert (replicas[np.arange(6), hottest] == replicas.max(axis=1)).all()
    # No rank wastes memory on two copies of one expert when it could avoid it.
    for layer in range(6):
        for rank in range(32):
            experts = p.rank_experts(layer, rank)
            assert len(set(experts)) == len(experts)


def test_hierarchical_keeps_each_group_inside_one_node() -> None:
    counts = synthetic_counts(4, R1_EXPERTS, seed=3, skew=0.5)
    p = rebalance(counts, 32, 4, 32, R1_GROUPS, policy="hierarchical")
    ranks_per_node, group_size = 8, R1_EXPERTS // R1_GROUPS
    for layer in range(4):
        nodes_of_group: dict[int, set[int]] = {}
        for rank in range(32):
            for e in p.rank_experts(layer, rank):
                nodes_of_group.setdefault(e // group_size, set()).add(rank // ranks_per_node)
        assert all(len(nodes) == 1 for nodes in nodes_of_group.values())
        # Each node holds exactly two whole groups.
        assert sorted(len([g for g, n in nodes_of_group.items() if n == {node}])
                      for node in range(4)) == [2, 2, 2, 2]


def test_auto_is_no_worse_than_either_policy() -> None:
    counts = synthetic_counts(8, R1_EXPERTS, seed=9, skew=1.0)
    ratios = {policy: max_mean_ratio(rebalance(counts, 32, 4, 32, R1_GROUPS, policy=policy),
                                     counts)
              for policy in ("auto", "hierarchical", "global")}
    assert ratios["auto"] <= min(ratios["hierarchical"], ratios["global"]) + 1e-9
    # A hot group caps what pinning groups to nodes can reach.
    assert ratios["hierarchical"] > 1.2 > 1.05 > ratios["global"]


def test_groups_that_do_not_divide_over_nodes_fall_back_to_global() -> None:
    counts = synthetic_counts(3, R1_EXPERTS, seed=4, skew=1.0)
    hierarchical = rebalance(counts, 48, 3, 32, R1_GROUPS, policy="hierarchical")
    assert hierarchical == rebalance(counts, 48, 3, 32, R1_GROUPS, policy="global")


def test_deterministic() -> None:
    counts = synthetic_counts(10, R1_EXPERTS, seed=11, skew=0.9)
    first = rebalance(counts, 16, 2, 16, R1_GROUPS)
    assert rebalance(counts.copy(), 16, 2, 16, R1_GROUPS) == first
    assert np.array_equal(synthetic_counts(10, R1_EXPERTS, seed=11, skew=0.9), counts)


def test_uniform_load_needs_no_help() -> None:
    counts = np.full((2, R1_EXPERTS), 100)
    assert max_mean_ratio(rebalance(counts, 32, 4, 0, R1_GROUPS), counts) == pytest.approx(1.0)
    zero = np.zeros((2, R1_EXPERTS))
    assert max_mean_ratio(rebalance(zero, 32, 4, 32, R1_GROUPS), zero) == 1.0


@pytest.mark.parametrize(("args", "message"), [
    ((32, 4, 30, 8), r"256 experts \+ 30 redundant = 286 slots .* EP size 32.*e\.g\. 32"),
    ((32, 3, 32, 8), "EP size 32 does not split evenly over 3 nodes"),
    ((32, 4, -1, 8), "redundant experts must be >= 0"),
    ((32, 4, 32, 7), "256 experts do not split into 7 equal groups"),
])
def test_bad_layouts_are_rejected(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rebalance(np.ones((1, R1_EXPERTS)), *args)


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        rebalance(-np.ones((1, R1_EXPERTS)), 32, 4, 32, 8)
    with pytest.raises(ValueError, match=r"\[layers, experts\]"):
        rebalance(np.ones(R1_EXPERTS), 32, 4, 32, 8)
    with pytest.raises(ValueError, match="policy"):
        rebalance(np.ones((1, R1_EXPERTS)), 32, 4, 32, 8, policy="best")  # type: ignore[arg-type]
