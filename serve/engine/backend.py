"""`Backend`: what the engine deployment needs of an engine backend — the engine, built from the
config, and the Serve options that place the replica hosting it.

Backends register by name in `registry.py`; the deployment and the app builder reach them only
through this interface, so neither has a branch per backend. A backend module imports its
heavy or GPU-only packages inside `build_engine`, never at import time: the app builder asks
every replica's placement in a process that runs no engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from serve.config import R1ServeConfig
from serve.engine.base import Engine


class Backend(ABC):
    """One engine backend, stateless: each method reads what it needs from the config."""

    @abstractmethod
    def build_engine(self, config: R1ServeConfig) -> Engine:
        """Start the engine in this process: an engine deployment replica, placed as
        `replica_options` asked. Blocks until the engine can serve."""

    @abstractmethod
    def replica_options(self, config: R1ServeConfig) -> dict[str, Any]:
        """The Serve deployment options that place one replica: `ray_actor_options`, and for an
        engine that spans a placement group, `placement_group_bundles` (from
        `cluster.group_plan`) and `placement_group_strategy`."""
