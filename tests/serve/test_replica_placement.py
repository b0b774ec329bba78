"""How one replica is placed, from the config alone (no Ray)."""

from __future__ import annotations

from serve.config import R1ServeConfig
from serve.engine.registry import backend_of


def replica_placement(config: R1ServeConfig) -> dict:
    return backend_of(config).replica_options(config)


def test_single_process_reference_replica_is_a_plain_actor():
    config = R1ServeConfig.from_dict({"engine": {"devices_per_node": 3}})
    assert replica_placement(config) == {"ray_actor_options": {"num_cpus": 3.0}}


def test_expert_parallel_replica_gets_one_bundle_per_node():
    config = R1ServeConfig.from_dict(
        {"engine": {"nodes_per_replica": 2, "devices_per_node": 4, "ep_size": 4}})
    placement = replica_placement(config)
    assert placement["placement_group_bundles"] == [{"CPU": 4.0}, {"CPU": 4.0}]
    assert placement["placement_group_strategy"] == "STRICT_SPREAD"
    assert placement["ray_actor_options"]["num_cpus"] == 0.0  # the ranks hold the CPUs


def test_sglang_replica_passes_network_settings_from_the_config():
    config = R1ServeConfig.from_dict({
        "model": {"backend": "sglang", "path": "/models/r1"},
        "engine": {"nodes_per_replica": 2, "devices_per_node": 8,
                   "env": {"NCCL_SOCKET_IFNAME": "ib0", "NCCL_IB_GID_INDEX": "3"},
                   "backend_args": {"profile": "h100x16"}},
    })
    placement = replica_placement(config)
    assert placement["placement_group_bundles"] == [{"GPU": 8.0, "CPU": 1.0}, {"GPU": 8.0}]
    assert placement["placement_group_strategy"] == "STRICT_SPREAD"
    env = placement["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env["NCCL_SOCKET_IFNAME"] == "ib0" and env["NCCL_IB_GID_INDEX"] == "3"
