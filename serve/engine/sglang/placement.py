"""Where SGLang's scheduler actors go inside a replica's placement group, and their environment.

The engine deployment reserves one bundle per node holding all of that node's GPUs
(`cluster.group_plan.group_bundles` of `replica_group`), and the replica process itself runs
in bundle 0 on a CPU of its own. `RayEngine` is created
without an explicit placement group, so SGLang takes the replica's own group
(`ray.util.get_current_placement_group()`) in its node-bundle mode: it finds the bundle on the
engine's node and puts ranks 0..G-1 there (rank 0 shares the node with the engine, as its
ZMQ/IPC sockets require), then ranks G..2G-1 on the next bundle, and so on, one GPU each.

`SGLANG_RAY_BUNDLE_INDICES` belongs to SGLang's other mode, a caller-supplied group of one-GPU
bundles: it must list one distinct bundle per rank, which node-sized bundles cannot express.
The plan therefore removes it from the environment, so a value inherited from an operator's
shell can never steer ranks onto the wrong bundles.

Ray gives each scheduler actor one GPU of its bundle and SGLang selects that device by the id
Ray reports, so CUDA_VISIBLE_DEVICES must not be narrowed per actor
(`RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1`, as SGLang's own Ray launcher sets). Network
interface variables are passed through, since a multi-node start hangs when NCCL or Gloo pick
the wrong interface. Child actors inherit the replica's runtime_env, so setting these on the
engine deployment reaches every scheduler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from cluster.group_plan import GroupSpec, group_bundles, group_strategy
from cluster.network_env import NETWORK_ENV
from serve.config import R1ServeConfig
from serve.engine.sglang.profiles import Layout
from serve.engine.sglang.server_args import layout_from_config
from serve.errors import ConfigError

log = logging.getLogger(__name__)

BUNDLE_INDICES_ENV = "SGLANG_RAY_BUNDLE_INDICES"
REPLICA_CPUS = 1.0  # the replica process: SGLang's tokenizer manager, in bundle 0

# Passed through from the deploying process when set: network settings and Hub access.
PASSTHROUGH_ENV = (*NETWORK_ENV, "HF_TOKEN", "HF_HUB_OFFLINE")
_PLAIN_IFNAME = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class RankSlot:
    """One SGLang scheduler (one GPU): its TP rank, bundle (= node) and GPU within it."""

    rank: int
    bundle: int
    local_gpu: int


@dataclass(frozen=True)
class RayLaunchPlan:
    """The placement and environment of one SGLang instance on Ray."""

    bundles: tuple[Mapping[str, float], ...]
    strategy: str
    slots: tuple[RankSlot, ...]
    env: Mapping[str, str]

    @property
    def world_size(self) -> int:
        return len(self.slots)

    def runtime_env(self) -> dict:
        """The engine deployment's `ray_actor_options["runtime_env"]`."""
        return {"env_vars": dict(self.env)}


def plan_ray_launch(config: R1ServeConfig, environ: Mapping[str, str]) -> RayLaunchPlan:
    """The plan for `config`; `environ` is the deploying process's environment."""
    layout = layout_from_config(config)
    spec = replica_group(config)
    bundles = group_bundles(spec)
    bundles[0]["CPU"] = REPLICA_CPUS
    return RayLaunchPlan(tuple(MappingProxyType(b) for b in bundles), group_strategy(spec),
                         rank_slots(layout), MappingProxyType(launch_env(layout, environ)))


def replica_group(config: R1ServeConfig) -> GroupSpec:
    """SGLang's schedulers of one replica: one per GPU, all of each node's GPUs."""
    e = config.engine
    return GroupSpec(nodes=e.nodes_per_replica, ranks_per_node=e.devices_per_node,
                     device="gpu", cpus_per_rank=0.0)


def rank_slots(layout: Layout, engine_bundle: int = 0) -> tuple[RankSlot, ...]:
    """Rank -> (bundle, GPU) as SGLang's node-bundle mode assigns them: the engine's bundle
    first, then the others in order, each filled with consecutive ranks."""
    order = [engine_bundle] + [b for b in range(layout.nnodes) if b != engine_bundle]
    g = layout.gpus_per_node
    return tuple(RankSlot(rank, order[rank // g], rank % g) for rank in range(layout.world_size))


def launch_env(layout: Layout, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables of the replica and, by inheritance, of SGLang's actors."""
    env = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
    env.update({k: environ[k] for k in PASSTHROUGH_ENV if environ.get(k)})
    if BUNDLE_INDICES_ENV in environ:
        log.warning("ignoring %s=%r: the engine's placement group has one bundle per node, "
                    "and SGLang maps ranks onto those itself", BUNDLE_INDICES_ENV,
                    environ[BUNDLE_INDICES_ENV])
    if layout.nnodes > 1:
        nccl = env.get("NCCL_SOCKET_IFNAME", "")
        # Gloo (SGLang's CPU groups) takes one exact interface name, NCCL also takes prefixes
        # and exclusions ("^lo,docker"): copy only a plain name across.
        if "GLOO_SOCKET_IFNAME" not in env and _PLAIN_IFNAME.fullmatch(nccl):
            env["GLOO_SOCKET_IFNAME"] = nccl
        if "NCCL_SOCKET_IFNAME" not in env:
            log.warning("a %d-node SGLang instance without NCCL_SOCKET_IFNAME: if startup "
                        "hangs at distributed init, set it (and GLOO_SOCKET_IFNAME) to the "
                        "nodes' cluster network interface", layout.nnodes)
    return env


def check_placement_group(bundle_specs: Sequence[Mapping[str, float]] | None,
                          layout: Layout) -> None:
    """Raise `ConfigError` unless this process's placement group fits `layout`: one bundle per
    node, each holding all of that node's GPUs."""
    if bundle_specs is None:
        raise ConfigError(
            "the SGLang engine must run inside the engine deployment's placement group "
            "(SGLangBackend.replica_options); without one SGLang would "
            "reserve a second set of GPUs and wait forever")
    gpus = [float(b.get("GPU", 0)) for b in bundle_specs]
    if len(gpus) != layout.nnodes or any(g != layout.gpus_per_node for g in gpus):
        raise ConfigError(
            f"placement group bundles {list(bundle_specs)} do not match "
            f"engine.nodes_per_replica={layout.nnodes} x engine.devices_per_node="
            f"{layout.gpus_per_node} GPUs")
