"""Placement of one model instance on Ray: a placement group with one bundle per node and one
actor per rank in it, each hosting a worker that a caller-supplied factory builds (so `cluster/`
knows nothing of models). The plan is pure data from a `GroupSpec` (`group_plan.py`);
`EngineGroup` turns it into actors and gives the driver fail-fast calls over all ranks.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray
import torch
from ray.actor import ActorHandle
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster import rendezvous
from cluster.group_plan import (
    GroupSpec,
    RankInfo,
    group_bundles,
    group_strategy,
    rank_layout,
)

_CONTROL = "control"  # concurrency group that answers while a rank is busy in a long call


class RankFailedError(RuntimeError):
    """A rank died, raised, or did not answer in time (`timed_out`). `rank`/`node_ip` name the
    first such rank; `ranks`/`node_ips` all of them."""

    def __init__(self, message: str, ranks: Sequence[int], node_ips: Sequence[str],
                 timed_out: bool = False) -> None:
        super().__init__(message)
        self.ranks, self.node_ips, self.timed_out = tuple(ranks), tuple(node_ips), timed_out
        self.rank, self.node_ip = self.ranks[0], self.node_ips[0]


class PlacementError(RuntimeError):
    """The placement group could not be placed in time; `unplaced` lists its bundle indices."""

    def __init__(self, message: str, unplaced: Sequence[int]) -> None:
        super().__init__(message)
        self.unplaced = tuple(unplaced)


@ray.remote(max_restarts=0, max_task_retries=0, concurrency_groups={_CONTROL: 1})
class RankActor:
    """One rank: builds its worker with the caller's factory and runs the worker's methods.

    The factory and every worker call run one at a time, in submission order (collectives must
    pair up across ranks), on one thread, so thread-local torch state the factory sets (grad
    mode, CUDA device) holds for the calls. Control calls (ping, rendezvous bookkeeping) run on
    their own thread: the driver still reaches a rank blocked in a collective.
    """

    def __init__(self, rank: int, world_size: int, bundle_index: int, local_rank: int,
                 device: str) -> None:
        self._info = RankInfo(rank, world_size, bundle_index, local_rank,
                              node_id=ray.get_runtime_context().get_node_id(),
                              node_ip=ray.util.get_node_ip_address())
        if device == "gpu":
            # Ray gives each rank one GPU of its bundle; exposing exactly that one (even if the
            # operator turned off Ray's own CUDA_VISIBLE_DEVICES handling) makes it cuda:0.
            # LOCAL_RANK is the torchrun convention libraries read for the local index.
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ray.get_gpu_ids())
            os.environ["LOCAL_RANK"] = str(local_rank)
        self._phase = rendezvous.IDLE
        self._worker: Any = None

    def start(self, factory: Callable[[RankInfo], Any]) -> RankInfo:
        self._worker = factory(self._info)
        return self._info

    @ray.method(concurrency_group=_CONTROL)
    def ping(self) -> bool:
        return True

    @ray.method(concurrency_group=_CONTROL)
    def pick_address(self) -> str:
        return rendezvous.pick_address()

    @ray.method(concurrency_group=_CONTROL)
    def rendezvous_phase(self) -> str:
        return self._phase

    def join(self, address: str, backend: str, timeout_s: float) -> None:
        self._phase = rendezvous.JOINING
        try:
            if backend == "nccl":
                torch.cuda.set_device(0)  # per thread: this is the thread worker calls run on
            rendezvous.join(address, self._info.rank, self._info.world_size, backend, timeout_s)
        except BaseException:
            self._phase = rendezvous.FAILED
            raise
        self._phase = rendezvous.JOINED

    def destroy(self) -> None:
        rendezvous.destroy()

    def execute(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._worker, method)(*args, **kwargs)


class EngineGroup:
    """A placement group plus one `RankActor` per rank: one model instance's processes."""

    def __init__(self, spec: GroupSpec, placement_group: PlacementGroup, owns_group: bool,
                 actors: Sequence[ActorHandle], name: str) -> None:  # use `create`
        self.spec = spec
        self.placement_group = placement_group
        self.name = name
        self.ranks: list[RankInfo] = []
        self._owns_group = owns_group
        self._actors = tuple(actors)
        self._failed = self._distributed = self._closed = False

    @classmethod
    def create(cls, spec: GroupSpec, worker_factory: Callable[[RankInfo], Any], *,
               env: Mapping[str, str] | None = None,
               placement_group: PlacementGroup | None = None,
               name: str = "r1serve-engine", start_timeout_s: float = 120.0) -> EngineGroup:
        """Place the group, start one actor per rank and build each rank's worker.

        `worker_factory(rank_info)` runs inside the rank's actor, so it must be picklable (a
        module-level function, class or `functools.partial`). `env` is set in every rank's
        process before the worker is built (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, ...).
        Without `placement_group` the group creates its own, named `<name>-<8 hex digits>`, and
        removes it on shutdown; with one (e.g. a Serve replica's
        `ray.util.get_current_placement_group()`), bundle i hosts the ranks of node i and must
        have room for them. Raises `PlacementError` if the bundles cannot be placed and
        `RankFailedError` if a rank does not start, both within `start_timeout_s`.
        """
        deadline = time.monotonic() + start_timeout_s
        owns_group = placement_group is None
        if placement_group is None:
            # Ray refuses a second live group of the same name; the suffix lets several engines
            # (replicas, tests) share one prefix that still reads well in `ray status`.
            placement_group = ray.util.placement_group(
                group_bundles(spec), strategy=group_strategy(spec),
                name=f"{name}-{uuid.uuid4().hex[:8]}")
        else:
            _check_bundles(placement_group, spec)
        try:
            _wait_placed(placement_group, spec, start_timeout_s)
        except BaseException:
            if owns_group:
                remove_placement_group(placement_group)
            raise
        options: dict[str, Any] = {"num_cpus": spec.cpus_per_rank,
                                   "num_gpus": 1 if spec.device == "gpu" else 0}
        if env:
            options["runtime_env"] = {"env_vars": dict(env)}
        actors = [
            RankActor.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group, placement_group_bundle_index=bundle),
                **options,
            ).remote(rank, spec.world_size, bundle, local_rank, spec.device)
            for rank, (bundle, local_rank) in enumerate(rank_layout(spec))
        ]
        group = cls(spec, placement_group, owns_group, actors, name)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            group.ranks = group.get([a.start.remote(worker_factory) for a in actors], remaining)
        except RankFailedError as e:
            group.shutdown()
            need = f"CPU={spec.cpus_per_rank}" + (", GPU=1" if spec.device == "gpu" else "")
            hint = f" (pending? each rank needs {need} in its bundle)" if e.timed_out else ""
            raise RankFailedError(f"engine group {name!r} did not start: {e}{hint}",
                                  e.ranks, e.node_ips, e.timed_out) from e
        except BaseException:
            group.shutdown()
            raise
        return group

    @property
    def actors(self) -> tuple[ActorHandle, ...]:
        """The rank actors in rank order, for callers that need a handle (fault tests)."""
        return self._actors

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> list[ray.ObjectRef]:
        """Call `worker.<method>(*args, **kwargs)` on every rank; refs in rank order."""
        return [a.execute.remote(method, *args, **kwargs) for a in self._actors]

    def call_each(self, method: str, per_rank_args: Sequence[tuple]) -> list[ray.ObjectRef]:
        """Call `worker.<method>(*per_rank_args[i])` on rank i; refs in rank order."""
        if len(per_rank_args) != self.spec.world_size:
            raise ValueError(f"call_each({method!r}) got {len(per_rank_args)} argument tuples "
                             f"for {self.spec.world_size} ranks")
        pairs = zip(self._actors, per_rank_args, strict=True)
        return [a.execute.remote(method, *args) for a, args in pairs]

    def get(self, refs: list[ray.ObjectRef], timeout_s: float | None = None) -> list[Any]:
        """Results of one call on every rank (`refs[i]` from rank i), in rank order.

        Fails fast: the first rank that died or raised raises `RankFailedError` at once,
        without waiting for the others, which may be blocked in a collective with it. Ranks
        still unanswered after `timeout_s` raise `RankFailedError` naming them.
        """
        if len(refs) != self.spec.world_size:
            raise ValueError(f"get() expects one ref per rank, got {len(refs)} refs for "
                             f"{self.spec.world_size} ranks")
        rank_of = {ref: r for r, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(refs)
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
            if not ready:
                late = sorted(rank_of[ref] for ref in pending)
                ips = self._ips(late)
                raise RankFailedError(
                    f"rank(s) {late} on node(s) {', '.join(sorted(set(ips)))} did not answer "
                    f"within {timeout_s:.1f} s (still running: busy or hung)", late, ips, True)
            if pending:  # collect everything already done in one go, not one wait per rank
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref in ready:
                results[rank_of[ref]] = self._result(rank_of[ref], ref)
        return results

    def init_distributed(self, backend: str | None = None, timeout_s: float = 60.0) -> None:
        """Form the torch.distributed world of all ranks (default backend: gloo for cpu, nccl
        for gpu). `timeout_s` bounds the start-up and becomes the collectives' timeout; a
        rank that does not join in time raises `rendezvous.RendezvousError` naming it."""
        if self._distributed:
            raise RuntimeError(f"engine group {self.name!r} already has a distributed world")
        rendezvous.form_world(self._actors, self.ranks,
                              backend or rendezvous.backend_for(self.spec.device), timeout_s)
        self._distributed = True

    def healthy(self, timeout_s: float = 1.0) -> bool:
        """False once any rank actor is dead or a call found it dead. A rank busy in a long
        call still counts as alive: its ping is answered on the control thread."""
        if self._failed or self._closed:
            return False
        pings = [a.ping.remote() for a in self._actors]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=timeout_s)
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.ActorDiedError:
                self._failed = True
                return False
            except ray.exceptions.RayActorError:  # unreachable now; may come back
                return False
        return True

    def shutdown(self, grace_s: float = 2.0) -> None:
        """Kill every rank actor (no restart) and remove the placement group if we created
        it. Live ranks first get `grace_s` to leave their process group cleanly."""
        if self._closed:
            return
        self._closed = True
        if self._distributed and not self._failed:
            ray.wait([a.destroy.remote() for a in self._actors],
                     num_returns=len(self._actors), timeout=grace_s)
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        if self._owns_group:
            remove_placement_group(self.placement_group)

    def __enter__(self) -> EngineGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _result(self, rank: int, ref: ray.ObjectRef) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:
            ip = self._ips([rank])[0]
            ray_says = " ".join(str(e).split())  # Ray's account spans lines; logs want one
            if isinstance(e, ray.exceptions.ActorDiedError):
                self._failed = True
                what = f"died: {ray_says}"
            elif isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None:
                what = f"raised {type(e.cause).__name__}: {e.cause}"
            else:  # unreachable actor, lost result, task killed for memory, ...
                what = f"failed: {ray_says}"
            raise RankFailedError(f"rank {rank} on node {ip} {what}", [rank], [ip]) from e

    def _ips(self, ranks: Sequence[int]) -> list[str]:
        if self.ranks:
            return [self.ranks[r].node_ip for r in ranks]
        # Still starting: the ranks have not reported, but their bundles know their nodes.
        nodes = _bundle_node_ips(self.placement_group)
        layout = rank_layout(self.spec)
        return [nodes.get(layout[r][0], "unknown") for r in ranks]


def _check_bundles(pg: PlacementGroup, spec: GroupSpec) -> None:
    # A given group that is too small would leave rank actors pending forever; say so now.
    bundles = pg.bundle_specs
    if len(bundles) < spec.nodes:
        raise ValueError(f"the placement group has {len(bundles)} bundle(s) but GroupSpec.nodes="
                         f"{spec.nodes} needs one per node")
    for i, need in enumerate(group_bundles(spec)):
        for key, amount in need.items():
            if bundles[i].get(key, 0.0) < amount:
                raise ValueError(
                    f"bundle {i} of the placement group has {key}={bundles[i].get(key, 0.0)} "
                    f"but {spec.ranks_per_node} ranks need {key}={amount}; enlarge the bundles "
                    f"or lower GroupSpec.ranks_per_node / cpus_per_rank")


def _wait_placed(pg: PlacementGroup, spec: GroupSpec, timeout_s: float) -> None:
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if ready:
        return
    placed, bundles = _bundle_node_ips(pg), pg.bundle_specs
    strategy = placement_group_table(pg).get("strategy", group_strategy(spec))
    unplaced = [i for i in range(len(bundles)) if i not in placed]
    wanted = ", ".join(f"{i}: {bundles[i]}" for i in unplaced)
    nodes = "; ".join(f"{n['NodeManagerAddress']} {_short(n['Resources'])}"
                      for n in ray.nodes() if n["Alive"])
    spread = ", every bundle on its own node" if "SPREAD" in strategy else ""
    raise PlacementError(
        f"could not place {len(unplaced)} of {len(bundles)} bundle(s) within {timeout_s:.0f} s "
        f"({strategy}{spread}): {wanted}. Alive nodes (total resources, some may be held by "
        f"other groups): {nodes}. Add nodes, or lower GroupSpec.nodes / ranks_per_node / "
        f"cpus_per_rank, or check node_resource={spec.node_resource!r}", unplaced)


def _bundle_node_ips(pg: PlacementGroup) -> dict[int, str]:
    """bundle index -> IP of the node holding it, for the bundles already placed."""
    table = placement_group_table(pg)
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    return {int(i): ips.get(node, "unknown")
            for i, node in table.get("bundles_to_node_id", {}).items() if node}


def _short(resources: Mapping[str, float]) -> dict[str, float]:
    # Ray lists internal per-node, per-group and memory keys; an operator wants the rest.
    hidden = ("node:", "memory", "object_store_memory")
    return {k: v for k, v in resources.items() if not k.startswith(hidden) and "_group_" not in k}
