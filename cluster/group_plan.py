"""Placement of one model instance as data: its shape (`GroupSpec`), the placement-group bundles
and strategy that hold it, and where each rank goes. Pure functions, free of Ray, so that
`EngineGroup` and every engine backend take a replica's bundles from this one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GroupSpec:
    """Shape of one model instance: `nodes` nodes with `ranks_per_node` ranks (devices) each."""

    nodes: int
    ranks_per_node: int
    device: Literal["cpu", "gpu"] = "cpu"
    cpus_per_rank: float = 1.0
    node_resource: str | None = None  # custom resource each bundle also asks 1 of

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.ranks_per_node < 1:
            raise ValueError(f"GroupSpec needs nodes >= 1 and ranks_per_node >= 1, got "
                             f"nodes={self.nodes}, ranks_per_node={self.ranks_per_node}")
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"GroupSpec.device must be 'cpu' or 'gpu', got {self.device!r}")
        # A CPU rank with no CPU would be an actor Ray may pack anywhere; GPU ranks may use 0.
        if self.cpus_per_rank < 0 or (self.device == "cpu" and self.cpus_per_rank == 0):
            raise ValueError(f"GroupSpec.cpus_per_rank must be > 0 for cpu ranks and >= 0 for "
                             f"gpu ranks, got {self.cpus_per_rank}")

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node


@dataclass(frozen=True)
class RankInfo:
    """Where one rank runs; node id and IP are reported by the rank's actor itself."""

    rank: int
    world_size: int
    bundle_index: int
    local_rank: int
    node_id: str
    node_ip: str


def group_bundles(spec: GroupSpec) -> list[dict[str, float]]:
    """One bundle per node holding all of that node's ranks."""
    bundle: dict[str, float] = {}
    if spec.cpus_per_rank > 0:
        bundle["CPU"] = spec.ranks_per_node * spec.cpus_per_rank
    if spec.device == "gpu":
        bundle["GPU"] = float(spec.ranks_per_node)
    if spec.node_resource is not None:
        bundle[spec.node_resource] = 1.0
    return [dict(bundle) for _ in range(spec.nodes)]


def group_strategy(spec: GroupSpec) -> str:
    """STRICT_SPREAD puts every bundle on its own node; a one-node group just packs."""
    return "STRICT_SPREAD" if spec.nodes > 1 else "STRICT_PACK"


def rank_layout(spec: GroupSpec) -> list[tuple[int, int]]:
    """rank -> (bundle index, local rank). Contiguous, so ranks of a node are neighbours and
    tensor-parallel groups of `ranks_per_node` ranks stay inside one node."""
    return [divmod(r, spec.ranks_per_node) for r in range(spec.world_size)]
