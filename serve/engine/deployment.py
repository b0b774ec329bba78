"""`EngineDeployment`: the Ray Serve deployment whose every replica is one model instance."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from serve.config import R1ServeConfig
from serve.engine.base import Engine, EngineStats, GenerationRequest, TokenDelta
from serve.engine.registry import backend_of
from serve.engine.replica_stats import autoscaling_stats, routing_stats
from serve.engine.stream_batches import stream_batches
from serve.errors import EngineFailedError

log = logging.getLogger(__name__)


class EngineDeployment:
    """Hosts one engine, built by the configured backend (`registry.py`), which also places
    the replica. The ingress streams from `generate`; Serve polls the stats methods."""

    def __init__(self, config: dict, engine: Engine | None = None) -> None:
        began = time.monotonic()
        self.config = R1ServeConfig.from_dict(config)
        self.config.apply_logging()
        if engine is None:
            import torch

            torch.set_num_threads(max(1, self.config.engine.devices_per_node))
        self.engine = engine or backend_of(self.config).build_engine(self.config)
        self.replica_id = _replica_id()
        # What the autoscaler learns a replica's start costs (weights load, SGLang's actors
        # come up), and when this one began serving: Serve stops the newest replica first.
        self.startup_s = time.monotonic() - began
        self.ready_at = time.time()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[TokenDelta]]:
        """The request's deltas, several engine steps to a Ray message (`stream_batches`)."""
        interval_s = self.config.engine.stream_batching_interval_ms / 1e3
        async for batch in stream_batches(self.engine.generate(request), interval_s):
            yield batch

    async def stats(self) -> tuple[str, EngineStats]:
        return self.replica_id, self.engine.stats()

    async def check_health(self) -> None:
        """Called by Serve; an exception marks the replica unhealthy and replaces it.

        Serve replaces a replica only after three failed checks in a row (transient failures
        pass), but one whose actor is gone at the next check. An engine that failed for good
        cannot come back, so its replica ends its own actor and is replaced seconds sooner.
        """
        try:
            await self.engine.health()
        except EngineFailedError as e:
            log.error("%s; ending replica %s so that Serve replaces it now", e.message,
                      self.replica_id)
            _end_this_actor()
            raise

    def record_routing_stats(self) -> dict[str, Any]:
        """What the request router sees of this replica (no remote call on the hot path)."""
        return routing_stats(self.engine.stats())

    def record_autoscaling_stats(self) -> dict[str, float]:
        """What the autoscaling policy sees of this replica."""
        return autoscaling_stats(self.engine.stats(), startup_s=self.startup_s,
                                 ready_at=self.ready_at)

    async def __del__(self) -> None:
        # Serve calls this once the replica's requests have drained. Past drain.deadline_s
        # Serve kills the actor instead, without calling it: the ingress then ends each stream
        # still running with a 503 (engine_unavailable) whose details go to its log.
        await self.engine.shutdown("this engine replica was removed")


def _end_this_actor() -> None:
    try:
        import ray

        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:  # outside a Ray actor (tests): nothing to end
        log.debug("not in a Ray actor; nothing to end", exc_info=True)


def _replica_id() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a Serve replica (tests)
        return "local"
