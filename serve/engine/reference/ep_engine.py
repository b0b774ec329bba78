"""Expert parallelism for the reference engine: a group of rank actors, one bundle per node,
stepping in lockstep under the engine's schedulers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from cluster.expert_placement import ExpertPlacement, contiguous
from cluster.group_plan import GroupSpec
from cluster.placement import EngineGroup
from serve.engine.reference.architecture import check_parallelism
from serve.engine.reference.checkpoint import load_model_args
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.engine.reference.executor import ModelExecutor
from serve.engine.reference.model_runner import StepItem
from serve.engine.reference.rank_worker import RankWorker
from serve.engine.reference.tokenizer import Tokenizer
from serve.errors import ConfigError

log = logging.getLogger(__name__)


class RayExecutor(ModelExecutor):
    """Calls every rank's `step` each engine step; any rank failing fails the step at once."""

    def __init__(self, group: EngineGroup, step_timeout_s: float = 300.0) -> None:
        self.group = group
        self.num_ranks = len(group.ranks)
        self.step_timeout_s = step_timeout_s

    def run(self, batches: Sequence[Sequence[StepItem]]) -> list[torch.Tensor | None]:
        refs = self.group.call_each("step", [(list(b),) for b in batches])
        return self.group.get(refs, timeout_s=self.step_timeout_s)

    def expert_counts(self) -> list[list[int]]:
        per_rank = self.group.get(self.group.call("expert_counts"), timeout_s=60)
        return [[sum(c) for c in zip(*layers, strict=True)]
                for layers in zip(*per_rank, strict=True)]

    def healthy(self) -> bool:
        return self.group.healthy()

    def shutdown(self) -> None:
        self.group.shutdown()


def start_ep_engine(path: str | Path, config: EngineConfig, *, ep: int, nodes: int = 1,
                    placement: ExpertPlacement | None = None,
                    env: Mapping[str, str] | None = None, placement_group=None,
                    cpus_per_rank: float = 1.0, start_timeout_s: float = 120.0,
                    ) -> ReferenceEngine:
    """Start `ep` rank actors over `nodes` nodes (inside `placement_group` when given, e.g. a
    Serve replica's own) and return the engine that schedules them."""
    args = load_model_args(path)
    check_parallelism(args, str(path), ep_size=ep, nodes=nodes, expert_placement=placement)
    if ep % nodes:
        raise ConfigError(f"ep_size ({ep}) must be a multiple of the node count ({nodes})")
    moe_layers = args.num_hidden_layers - args.first_k_dense_replace
    if placement is None:
        if args.n_routed_experts % ep:
            raise ConfigError(f"n_routed_experts ({args.n_routed_experts}) is not divisible by "
                              f"ep_size ({ep}); pick a divisor or give an EPLB placement")
        placement = contiguous(args.n_routed_experts, ep, moe_layers)
    if placement.num_ranks != ep or len(placement.physical_to_logical) != moe_layers:
        raise ConfigError(f"the expert placement is for {placement.num_ranks} ranks and "
                          f"{len(placement.physical_to_logical)} MoE layers; this engine has "
                          f"ep_size {ep} and {moe_layers} MoE layers")
    spec = GroupSpec(nodes=nodes, ranks_per_node=ep // nodes, cpus_per_rank=cpus_per_rank)
    factory = functools.partial(RankWorker, model_path=str(path),
                                placement_json=placement.to_json(), kv_pages=config.kv_pages,
                                page_size=config.page_size)
    group = EngineGroup.create(spec, factory, env=env, placement_group=placement_group,
                               start_timeout_s=start_timeout_s)
    try:
        group.init_distributed("gloo", timeout_s=start_timeout_s)
        group.get(group.call("setup_dispatch"), timeout_s=start_timeout_s)
    except BaseException:
        group.shutdown()
        raise
    log.info("expert-parallel group up: %s", ", ".join(
        f"rank {r.rank}@{r.node_ip}" for r in group.ranks))
    return ReferenceEngine(None, Tokenizer.from_dir(path), config,
                           executor=RayExecutor(group), args=args)
