"""`ReferenceBackend`: the pure-PyTorch engine, in the replica's process or, with expert
parallelism, over rank actors that fill the replica's placement group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cluster.group_plan import GroupSpec, group_bundles, group_strategy
from cluster.network_env import network_env
from serve.config import R1ServeConfig
from serve.engine.backend import Backend
from serve.engine.base import Engine
from serve.engine.model_path import model_path
from serve.errors import ConfigError


class ReferenceBackend(Backend):
    def build_engine(self, config: R1ServeConfig) -> Engine:
        from serve.engine.reference.engine import ReferenceEngine
        from serve.engine.reference.engine_config import EngineConfig

        e = config.engine
        engine_config = EngineConfig.from_config(config)
        if _single_process(config):
            return ReferenceEngine.from_checkpoint(model_path(config), engine_config)
        import ray

        from serve.engine.reference.ep_engine import start_ep_engine

        placement = None
        if e.expert_placement:
            from cluster.expert_placement import ExpertPlacement

            try:
                placement = ExpertPlacement.from_json(Path(e.expert_placement).read_text())
            except (OSError, ValueError) as err:
                raise ConfigError(f"engine.expert_placement: {err}") from err
        spec = rank_group(config)
        # the deploying process's network settings reach the ranks; the config's env overrides
        return start_ep_engine(
            model_path(config), engine_config, ep=e.ep_size, nodes=spec.nodes,
            placement=placement, placement_group=ray.util.get_current_placement_group(),
            cpus_per_rank=spec.cpus_per_rank, env={**network_env(os.environ), **e.env})

    def replica_options(self, config: R1ServeConfig) -> dict[str, Any]:
        if _single_process(config):
            return {"ray_actor_options": {"num_cpus": float(config.engine.devices_per_node)}}
        spec = rank_group(config)
        # The replica only schedules; its ranks hold the CPUs.
        return {"placement_group_bundles": group_bundles(spec),
                "placement_group_strategy": group_strategy(spec),
                "ray_actor_options": {"num_cpus": 0.0}}


def rank_group(config: R1ServeConfig) -> GroupSpec:
    """The expert-parallel ranks of one replica: `ep_size` over its nodes, each node's CPUs
    (`devices_per_node`) shared by the ranks on it."""
    e = config.engine
    ranks_per_node = e.ep_size // e.nodes_per_replica
    return GroupSpec(nodes=e.nodes_per_replica, ranks_per_node=ranks_per_node,
                     cpus_per_rank=e.devices_per_node / ranks_per_node)


def _single_process(config: R1ServeConfig) -> bool:
    return config.engine.ep_size == 1 and config.engine.nodes_per_replica == 1
