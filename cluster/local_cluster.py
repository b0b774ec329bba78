"""A local Ray for development and tests: one node, or several simulated on this machine, every
listener on loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray._private import ray_constants


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def loopback_node_ip() -> Iterator[None]:
    """Ray nodes started inside this block take 127.0.0.1 as their IP, so that nothing they
    listen on is reachable from another machine.

    Unless its node IP is loopback, a Ray node listens on every interface: its gRPC servers (GCS,
    raylet, object manager, workers, dashboard agent) on `::`, its three Prometheus exporters
    (the dashboard agent's metrics export port, the dashboard's and the autoscaler monitor's
    metrics ports) on 0.0.0.0, its agents' HTTP ports on the node IP. On Linux Ray takes the
    host's routable IP and turns a loopback `_node_ip_address` back into it; only the switch
    behind `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` (clusters off, as on macOS) keeps a node on
    127.0.0.1. Ray reads that variable once, at import, so the switch is set on the module it
    lands in; worker processes take the IP their raylet gives them.
    tests/cluster/test_local_cluster.py fails if a Ray upgrade moves it."""
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def init_local_ray(**init_kwargs) -> None:
    """`ray.init` a new single-node Ray on this machine, on loopback only. Never an existing
    cluster: a stale /tmp/ray/ray_current_cluster from an earlier `ray start` does not count."""
    init_kwargs.setdefault("logging_level", logging.WARNING)
    init_kwargs.setdefault("include_dashboard", False)
    with loopback_node_ip():
        ray.init(address="local", **init_kwargs)


@contextmanager
def local_ray(nodes: int = 1, cpus_per_node: float = 2, **init_kwargs) -> Iterator[None]:
    """Start Ray here; with `nodes` > 1 each node is a separate raylet of a
    `ray.cluster_utils.Cluster`, so placement groups spread across them as on real nodes."""
    if nodes <= 1:
        init_local_ray(num_cpus=cpus_per_node, **init_kwargs)
        try:
            yield
        finally:
            ray.shutdown()
        return
    from ray.cluster_utils import Cluster

    init_kwargs.setdefault("logging_level", logging.WARNING)
    init_kwargs.pop("include_dashboard", None)
    with loopback_node_ip():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=cpus_per_node)
            cluster.wait_for_nodes()
            # The driver finds its raylet by the node IP: it too must see loopback.
            ray.init(address=cluster.address, **init_kwargs)
        except BaseException:
            cluster.shutdown()
            raise
    try:
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()
