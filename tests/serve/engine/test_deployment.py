"""`EngineDeployment`'s reports to Ray Serve: the router's and the autoscaler's dicts."""

from __future__ import annotations

import time

import pytest

from serve.config import R1ServeConfig
from serve.engine.base import EngineStats
from serve.engine.deployment import EngineDeployment
from serve.engine.replica_stats import autoscaling_stats, routing_stats

STATS = EngineStats(running=3, waiting=1, kv_pages_used=10, kv_pages_total=40, page_size=16,
                    queued_prefill_tokens=500, expected_remaining_decode_tokens=900,
                    prefix_cache_hit_tokens=64, prompt_tokens=640,
                    generation_tokens_per_s=42.0, cached_block_hashes=(7, 8),
                    ttft_p90_s=0.5, decode_bound_tokens=4000, max_running=8)


class _StatsEngine:
    def stats(self) -> EngineStats:
        return STATS


# Serve awaits the replica's async __del__ (the drain deadline); a bare object never does.
@pytest.mark.filterwarnings("ignore:coroutine 'EngineDeployment.__del__' was never awaited")
def test_the_replica_reports_its_stats_startup_and_readiness():
    before = time.time()
    deployment = EngineDeployment(R1ServeConfig.from_dict({}).model_dump(),
                                  engine=_StatsEngine())
    assert deployment.record_routing_stats() == routing_stats(STATS)
    metrics = deployment.record_autoscaling_stats()
    assert 0 <= metrics["startup_s"] < 30 and before <= metrics["ready_at"] <= time.time()
    assert metrics == autoscaling_stats(STATS, startup_s=metrics["startup_s"],
                                        ready_at=metrics["ready_at"])
    assert metrics["kv_utilization"] == 0.25 and metrics["ttft_p90_s"] == 0.5


class _FailingEngine(_StatsEngine):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def health(self) -> None:
        raise self.error


def test_a_replica_whose_engine_failed_for_good_ends_itself(monkeypatch):
    """Serve replaces a replica whose actor is gone at its next check, but one that fails its
    checks only after three in a row: a dead engine's replica ends itself."""
    import asyncio
    from types import SimpleNamespace

    import serve.engine.deployment as deployment_module
    from serve.errors import EngineDeadError, EngineFailedError

    ended = []
    monkeypatch.setattr(deployment_module, "_end_this_actor", lambda: ended.append(True))
    for error, ends in ((EngineDeadError("a rank is unreachable"), False),
                        (EngineFailedError("rank 1 died mid-step"), True)):
        replica = SimpleNamespace(engine=_FailingEngine(error), replica_id="r1")
        with pytest.raises(EngineDeadError):
            asyncio.run(EngineDeployment.check_health(replica))
        assert bool(ended) == ends
