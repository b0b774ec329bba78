"""Placement-group bundles, rank slots and launch environment for 1, 2 and 4 nodes."""

from __future__ import annotations

import pytest

from serve.config import R1ServeConfig
from serve.engine.sglang.backend import SGLangBackend
from serve.engine.sglang.placement import (
    BUNDLE_INDICES_ENV,
    check_placement_group,
    plan_ray_launch,
    rank_slots,
)
from serve.engine.sglang.profiles import Layout
from serve.errors import ConfigError


def _config(nodes: int, gpus: int = 8, **engine) -> R1ServeConfig:
    return R1ServeConfig.from_dict({
        "model": {"path": "/m", "backend": "sglang"},
        "engine": {"nodes_per_replica": nodes, "devices_per_node": gpus, **engine}})


@pytest.mark.parametrize("nodes,strategy", [(1, "STRICT_PACK"), (2, "STRICT_SPREAD"),
                                            (4, "STRICT_SPREAD")])
def test_one_node_sized_bundle_per_node_replica_on_the_first(nodes: int, strategy: str) -> None:
    plan = plan_ray_launch(_config(nodes), environ={})
    options = SGLangBackend().replica_options(_config(nodes))
    assert [dict(b) for b in plan.bundles] == options["placement_group_bundles"]
    assert [b["GPU"] for b in plan.bundles] == [8.0] * nodes
    assert plan.bundles[0]["CPU"] == 1.0 and all("CPU" not in b for b in plan.bundles[1:])
    assert plan.strategy == strategy
    assert plan.world_size == 8 * nodes
    # Every GPU of every bundle holds exactly one rank; rank 0 is on the replica's bundle.
    assert sorted((s.bundle, s.local_gpu) for s in plan.slots) == [
        (b, g) for b in range(nodes) for g in range(8)]
    assert plan.slots[0].bundle == 0 and plan.slots[0].local_gpu == 0
    assert [s.bundle for s in plan.slots] == [r // 8 for r in range(8 * nodes)]


def test_rank_zero_follows_the_engine_bundle() -> None:
    """SGLang puts ranks 0..G-1 on whichever bundle shares the engine's node."""
    slots = rank_slots(Layout(nnodes=4, gpus_per_node=2), engine_bundle=2)
    assert [s.bundle for s in slots] == [2, 2, 0, 0, 1, 1, 3, 3]


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_environment(nodes: int) -> None:
    environ = {"NCCL_SOCKET_IFNAME": "eth0", "NCCL_IB_GID_INDEX": "3",
               BUNDLE_INDICES_ENV: "0,1", "UNRELATED": "x"}
    env = plan_ray_launch(_config(nodes), environ).env
    assert env["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] == "1"
    assert env["NCCL_SOCKET_IFNAME"] == "eth0" and env["NCCL_IB_GID_INDEX"] == "3"
    # Node-sized bundles: SGLang maps ranks itself; an inherited index list must not leak in.
    assert BUNDLE_INDICES_ENV not in env
    assert "UNRELATED" not in env
    # Gloo follows NCCL's interface when several nodes must rendezvous.
    assert env.get("GLOO_SOCKET_IFNAME") == ("eth0" if nodes > 1 else None)


def test_gloo_interface_not_copied_from_an_nccl_pattern() -> None:
    env = plan_ray_launch(_config(2), {"NCCL_SOCKET_IFNAME": "^lo,docker"}).env
    assert "GLOO_SOCKET_IFNAME" not in env
    env = plan_ray_launch(_config(2), {"NCCL_SOCKET_IFNAME": "ib0",
                                       "GLOO_SOCKET_IFNAME": "eth1"}).env
    assert env["GLOO_SOCKET_IFNAME"] == "eth1"


def test_runtime_env_for_the_deployment() -> None:
    plan = plan_ray_launch(_config(2), {"NCCL_SOCKET_IFNAME": "eth0"})
    assert plan.runtime_env() == {"env_vars": dict(plan.env)}


def test_placement_group_check() -> None:
    layout = Layout(nnodes=2, gpus_per_node=8)
    check_placement_group([{"GPU": 8, "CPU": 1}, {"GPU": 8}], layout)
    with pytest.raises(ConfigError, match="placement group"):
        check_placement_group(None, layout)
    with pytest.raises(ConfigError, match="nodes_per_replica=2"):
        check_placement_group([{"GPU": 1}] * 16, layout)  # SGLang's per-GPU custom mode
