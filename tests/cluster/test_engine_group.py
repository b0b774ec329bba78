"""EngineGroup on a simulated two-node Ray cluster: placement, gloo collectives across nodes,
env passthrough, rendezvous and rank failures that name the rank, shutdown and reuse."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch
import torch.distributed as dist
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.group_plan import GroupSpec, RankInfo, group_bundles, group_strategy
from cluster.placement import EngineGroup, PlacementError, RankFailedError
from cluster.rendezvous import RendezvousError

pytestmark = pytest.mark.multinode

SPEC = GroupSpec(nodes=2, ranks_per_node=2, cpus_per_rank=1.0, node_resource="sim_node")
ENV = {"R1SERVE_TEST_MARKER": "from-config", "NCCL_IB_GID_INDEX": "3"}


class CollectiveWorker:
    """What a model shard would be, reduced to the collectives the engine relies on."""

    def __init__(self, info: RankInfo) -> None:
        self.info = info
        torch.set_num_threads(1)  # four ranks share two cores

    def rank_info(self) -> RankInfo:
        return self.info

    def getenv(self, name: str) -> str | None:
        return os.environ.get(name)

    def all_reduce_sum(self, value: float, delay_s: float = 0.0) -> float:
        time.sleep(delay_s)
        t = torch.tensor([value])
        dist.all_reduce(t)
        return t.item()

    def all_to_all(self) -> list[int]:
        """Uneven all_to_all_single, as expert-parallel dispatch uses it: rank r sends rank j
        `size(r, j)` copies of 100 * r + j."""
        r, n = dist.get_rank(), dist.get_world_size()
        send = torch.cat([torch.full((_size(r, j),), 100 * r + j) for j in range(n)])
        recv = torch.empty(sum(_size(i, r) for i in range(n)), dtype=send.dtype)
        dist.all_to_all_single(recv, send, output_split_sizes=[_size(i, r) for i in range(n)],
                               input_split_sizes=[_size(r, j) for j in range(n)])
        return recv.tolist()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def echo(self, *args: object, **kwargs: object) -> tuple:
        return self.info.rank, args, kwargs

    def fail_on(self, rank: int) -> None:
        if self.info.rank == rank:
            raise ValueError(f"bad input on rank {rank}")


def failing_factory(info: RankInfo) -> CollectiveWorker:
    if info.rank == 2:
        raise FileNotFoundError("no checkpoint shard for rank 2")
    return CollectiveWorker(info)


def _size(src: int, dst: int) -> int:
    return (src + dst) % 3 + 1


@ray.remote(num_cpus=0)
class FakeReplica:
    """Stands in for a Ray Serve replica: it lives in bundle 0 of its own placement group and
    builds its engine group inside that group."""

    def run(self) -> tuple[list[str], list[float]]:
        pg = ray.util.get_current_placement_group()
        with EngineGroup.create(SPEC, CollectiveWorker, placement_group=pg) as group:
            group.init_distributed("gloo", timeout_s=30)
            sums = group.get(group.call("all_reduce_sum", 1.0), timeout_s=30)
            return [r.node_id for r in group.ranks], sums


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    # The actors unpickle the worker classes of this module by value: the module is imported
    # under a pytest-chosen name that the actors could not import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Logical CPUs beyond the physical two, and two `sim_node` units per node, so the shared
    # group below and one more group (plus a fake replica) fit side by side.
    node = {"num_cpus": 6, "resources": {"sim_node": 2}, "object_store_memory": 200 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    repo = Path(__file__).resolve().parents[2]
    ray.init(address=cluster.address, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(repo)}})
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def group(two_nodes: Cluster) -> Iterator[EngineGroup]:
    """One healthy 2x2 group with a distributed world, shared by the read-only tests."""
    with EngineGroup.create(SPEC, CollectiveWorker, env=ENV, start_timeout_s=60) as g:
        g.init_distributed("gloo", timeout_s=30)
        yield g


def test_ranks_land_two_per_node(group: EngineGroup) -> None:
    ranks = group.ranks
    assert [r.rank for r in ranks] == [0, 1, 2, 3]
    assert [(r.bundle_index, r.local_rank) for r in ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ranks[0].node_id == ranks[1].node_id != ranks[2].node_id == ranks[3].node_id
    assert all(r.node_ip and r.world_size == 4 for r in ranks)
    table = placement_group_table(group.placement_group)
    assert table["strategy"] == "STRICT_SPREAD"
    placed = table["bundles_to_node_id"]
    assert [placed[r.bundle_index] for r in ranks] == [r.node_id for r in ranks]
    # The workers saw the same RankInfo the group reports.
    assert group.get(group.call("rank_info"), timeout_s=10) == ranks


def test_collectives_across_nodes(group: EngineGroup) -> None:
    refs = group.call_each("all_reduce_sum", [(float(r + 1),) for r in range(4)])
    assert group.get(refs, timeout_s=20) == [10.0] * 4
    received = group.get(group.call("all_to_all"), timeout_s=20)
    for r in range(4):
        assert received[r] == [100 * i + r for i in range(4) for _ in range(_size(i, r))]


def test_env_reaches_every_rank(group: EngineGroup) -> None:
    for name, value in ENV.items():
        assert group.get(group.call("getenv", name), timeout_s=10) == [value] * 4
    assert group.healthy()


def test_calls_pass_arguments_through(group: EngineGroup) -> None:
    assert group.get(group.call("echo", 1, method="greedy"), timeout_s=10) == [
        (r, (1,), {"method": "greedy"}) for r in range(4)]
    assert group.get(group.call_each("echo", [(r, "x") for r in range(4)]), timeout_s=10) == [
        (r, (r, "x"), {}) for r in range(4)]


def test_worker_exception_names_the_rank(group: EngineGroup) -> None:
    with pytest.raises(RankFailedError, match="rank 2 .*ValueError: bad input") as info:
        group.get(group.call("fail_on", 2), timeout_s=10)
    assert info.value.rank == 2 and info.value.node_ip == group.ranks[2].node_ip
    assert group.healthy()  # a worker raising is not a dead rank


def test_silent_rank_times_out_by_name(group: EngineGroup) -> None:
    refs = group.call_each("sleep", [(0,), (3,), (0,), (0,)])
    with pytest.raises(RankFailedError, match=r"rank\(s\) \[1\].*did not answer") as info:
        group.get(refs, timeout_s=1)
    assert info.value.ranks == (1,) and info.value.timed_out
    assert group.healthy()  # busy is not dead: the ping is answered beside the long call
    group.get(refs, timeout_s=10)  # leave the shared group idle for the next test


def test_rank_that_never_joins_is_named(two_nodes: Cluster) -> None:
    with EngineGroup.create(SPEC, CollectiveWorker, start_timeout_s=60) as g:
        g.call_each("sleep", [(0,), (0,), (0,), (60,)])  # rank 3 is busy elsewhere
        start = time.monotonic()
        with pytest.raises(RendezvousError, match="rank 3 .*did not join") as info:
            g.init_distributed("gloo", timeout_s=5)
        assert time.monotonic() - start < 12
        assert info.value.ranks == (3,)
        assert info.value.node_ips == (g.ranks[3].node_ip,)
        assert "ranks [0, 1, 2] were waiting" in str(info.value)


def test_dead_rank_fails_fast_and_the_cluster_recovers(two_nodes: Cluster) -> None:
    g = EngineGroup.create(SPEC, CollectiveWorker, start_timeout_s=60)
    try:
        g.init_distributed("gloo", timeout_s=60)
        # Ranks 0, 2, 3 wait in the all_reduce for rank 1, which dies before it gets there.
        refs = g.call("all_reduce_sum", 1.0, delay_s=1.0)
        ray.kill(g.actors[1], no_restart=True)
        start = time.monotonic()
        with pytest.raises(RankFailedError, match="rank 1 .*died") as info:
            g.get(refs, timeout_s=60)
        assert time.monotonic() - start < 10
        assert info.value.rank == 1 and info.value.node_ip == g.ranks[1].node_ip
        assert not g.healthy()
    finally:
        g.shutdown()
    # Shutdown released the nodes: a fresh group places and works.
    with EngineGroup.create(SPEC, CollectiveWorker, start_timeout_s=60) as fresh:
        assert fresh.healthy()
        fresh.init_distributed("gloo", timeout_s=30)
        assert fresh.get(fresh.call("all_reduce_sum", 2.0), timeout_s=20) == [8.0] * 4
        # With no call in flight, only the ping notices a dead rank.
        ray.kill(fresh.actors[3], no_restart=True)
        deadline = time.monotonic() + 10
        while fresh.healthy() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not fresh.healthy()


def test_factory_failure_names_the_rank_and_frees_the_nodes(two_nodes: Cluster) -> None:
    with pytest.raises(RankFailedError, match="did not start: rank 2 .*no checkpoint") as info:
        EngineGroup.create(SPEC, failing_factory, name="bad-factory", start_timeout_s=60)
    assert info.value.rank == 2
    groups = ray.util.placement_group_table().values()
    assert all(g["state"] == "REMOVED" for g in groups if g["name"].startswith("bad-factory"))


def test_group_inside_an_existing_placement_group(two_nodes: Cluster) -> None:
    bundles = group_bundles(SPEC)
    bundles[0]["CPU"] += 1  # room for the replica itself, as a Serve deployment asks
    pg = ray.util.placement_group(bundles, strategy=group_strategy(SPEC))
    try:
        ray.get(pg.ready(), timeout=30)
        in_bundle_0 = PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
        replica = FakeReplica.options(num_cpus=1, scheduling_strategy=in_bundle_0).remote()
        node_ids, sums = ray.get(replica.run.remote(), timeout=60)
        assert sums == [4.0] * 4
        placed = placement_group_table(pg)["bundles_to_node_id"]
        assert node_ids == [placed[0], placed[0], placed[1], placed[1]]
        ray.kill(replica)
        assert placement_group_table(pg)["state"] == "CREATED"  # not ours to remove
    finally:
        remove_placement_group(pg)


def test_unplaceable_group_names_its_bundles(two_nodes: Cluster) -> None:
    three_nodes = GroupSpec(nodes=3, ranks_per_node=1, node_resource="sim_node")
    start = time.monotonic()
    with pytest.raises(PlacementError, match=r"3 of 3 bundle\(s\).*STRICT_SPREAD") as info:
        EngineGroup.create(three_nodes, CollectiveWorker, start_timeout_s=1)
    assert info.value.unplaced == (0, 1, 2)
    assert time.monotonic() - start < 10
    assert "sim_node" in str(info.value)


def test_too_small_placement_group_is_rejected(two_nodes: Cluster) -> None:
    pg = ray.util.placement_group([{"CPU": 1, "sim_node": 1}] * 2, strategy="STRICT_SPREAD")
    try:
        with pytest.raises(ValueError, match="bundle 0 .*CPU=1.0 .*CPU=2.0"):
            EngineGroup.create(SPEC, CollectiveWorker, placement_group=pg)
    finally:
        remove_placement_group(pg)
