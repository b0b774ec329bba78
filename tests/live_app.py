"""One r1serve application on a local Ray, started as the live tests start it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ray import serve

from cluster.local_cluster import local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy


@contextmanager
def live_app(config: R1ServeConfig, nodes: int = 1, cpus_per_node: float = 2) -> Iterator[str]:
    """Start a local Ray and `config`'s application on it; yield the API's base URL, then shut
    Serve and Ray down."""
    with local_ray(nodes, cpus_per_node=cpus_per_node):
        try:
            start_app(config)
            wait_healthy(config, timeout_s=240, progress=lambda _: None)
            yield f"http://127.0.0.1:{config.api.port}"
        finally:
            serve.shutdown()
