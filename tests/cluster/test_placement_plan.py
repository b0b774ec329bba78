"""The placement plan is pure data: bundles, strategy and rank layout from a GroupSpec."""

from __future__ import annotations

import pytest

from cluster.group_plan import GroupSpec, group_bundles, group_strategy, rank_layout

SHAPES = [(k, g) for k in (1, 2, 4) for g in (1, 2, 8)]


@pytest.mark.parametrize(("nodes", "per_node"), SHAPES)
def test_cpu_bundles_hold_each_nodes_ranks(nodes: int, per_node: int) -> None:
    spec = GroupSpec(nodes=nodes, ranks_per_node=per_node, cpus_per_rank=2.0)
    assert group_bundles(spec) == [{"CPU": 2.0 * per_node}] * nodes


@pytest.mark.parametrize(("nodes", "per_node"), SHAPES)
def test_gpu_bundles_ask_one_gpu_per_rank(nodes: int, per_node: int) -> None:
    spec = GroupSpec(nodes=nodes, ranks_per_node=per_node, device="gpu")
    assert group_bundles(spec) == [{"CPU": float(per_node), "GPU": float(per_node)}] * nodes


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_node_resource_is_asked_once_per_bundle(device: str) -> None:
    spec = GroupSpec(nodes=2, ranks_per_node=8, device=device, node_resource="h200-node")
    bundles = group_bundles(spec)
    assert len(bundles) == 2
    assert all(b["h200-node"] == 1.0 and b["CPU"] == 8.0 for b in bundles)
    assert all(("GPU" in b) == (device == "gpu") for b in bundles)


def test_gpu_ranks_may_ask_no_cpu() -> None:
    spec = GroupSpec(nodes=2, ranks_per_node=8, device="gpu", cpus_per_rank=0)
    assert group_bundles(spec) == [{"GPU": 8.0}, {"GPU": 8.0}]


def test_bundles_are_independent_dicts() -> None:
    bundles = group_bundles(GroupSpec(nodes=2, ranks_per_node=2))
    bundles[0]["CPU"] = 99.0  # a caller adding room for its own process on the first node
    assert bundles[1]["CPU"] == 2.0


@pytest.mark.parametrize(("nodes", "strategy"), [(1, "STRICT_PACK"), (2, "STRICT_SPREAD"),
                                                 (4, "STRICT_SPREAD")])
def test_multi_node_groups_spread_one_bundle_per_node(nodes: int, strategy: str) -> None:
    for device in ("cpu", "gpu"):
        assert group_strategy(GroupSpec(nodes=nodes, ranks_per_node=8, device=device)) == strategy


@pytest.mark.parametrize(("nodes", "per_node"), SHAPES)
def test_rank_layout_is_contiguous_per_node(nodes: int, per_node: int) -> None:
    spec = GroupSpec(nodes=nodes, ranks_per_node=per_node)
    layout = rank_layout(spec)
    assert len(layout) == spec.world_size == nodes * per_node
    assert layout == [(r // per_node, r % per_node) for r in range(nodes * per_node)]
    for bundle in range(nodes):
        assert [local for b, local in layout if b == bundle] == list(range(per_node))


def test_rank_layout_of_two_h100_nodes() -> None:
    layout = rank_layout(GroupSpec(nodes=2, ranks_per_node=8, device="gpu"))
    assert layout[7] == (0, 7) and layout[8] == (1, 0) and layout[15] == (1, 7)


@pytest.mark.parametrize("kwargs", [
    {"nodes": 0, "ranks_per_node": 1},
    {"nodes": 1, "ranks_per_node": 0},
    {"nodes": 1, "ranks_per_node": 1, "device": "tpu"},
    {"nodes": 1, "ranks_per_node": 1, "cpus_per_rank": 0},
    {"nodes": 1, "ranks_per_node": 1, "device": "gpu", "cpus_per_rank": -1},
])
def test_invalid_specs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="GroupSpec"):
        GroupSpec(**kwargs)
