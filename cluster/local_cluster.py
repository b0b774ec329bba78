"""A local Ray for development and tests: one node, or several simulated on this machine."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_ray(nodes: int = 1, cpus_per_node: float = 2, **init_kwargs) -> Iterator[None]:
    """Start Ray here; with `nodes` > 1 each node is a separate raylet of a
    `ray.cluster_utils.Cluster`, so placement groups spread across them as on real nodes."""
    init_kwargs.setdefault("logging_level", logging.WARNING)
    init_kwargs.setdefault("include_dashboard", False)
    if nodes <= 1:
        ray.init(address="local", num_cpus=cpus_per_node, **init_kwargs)
        try:
            yield
        finally:
            ray.shutdown()
        return
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus_per_node)
    try:
        cluster.wait_for_nodes()
        init_kwargs.pop("include_dashboard")
        ray.init(address=cluster.address, **init_kwargs)
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()
