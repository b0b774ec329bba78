"""The router learns which replica the autoscaler drains from a (fake) scaling board, off the
routing path, and ranks it last."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.scaling_board import STALE_S
from serve.routing.draining_watch import DrainingWatch
from serve.routing.prefix_aware_router import PrefixAwareRouter

DEPLOYMENT = DeploymentID(name="EngineDeployment", app_name="r1serve")


class FakeBoard:
    """A `ScalingBoard` whose decision the test sets; `fail` makes reads raise, `gate` (an
    unset event) makes them block until it is set."""

    def __init__(self, draining: str | None = None) -> None:
        self.decision: ScalingDecision | None = decision(draining)
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.reads = 0

    def read(self) -> ScalingDecision | None:
        self.gate.wait(5)
        self.reads += 1
        if self.fail:
            raise ConnectionError("GCS unreachable")
        return self.decision


def decision(draining: str | None, age_s: float = 0.0) -> ScalingDecision:
    return ScalingDecision(at=time.time() - age_s, replicas=2, running=3, target=3,
                           draining=() if draining is None else (draining,),
                           reason="removing the newest replica")


def replica(rid: str) -> SimpleNamespace:
    """What `choose_replicas` reads of a Serve `RunningReplica`."""
    return SimpleNamespace(replica_id=ReplicaID(rid, DEPLOYMENT), routing_stats={})


def router(board: FakeBoard) -> PrefixAwareRouter:
    r = PrefixAwareRouter(deployment_id=DEPLOYMENT,
                          handle_source=DeploymentHandleSource.UNKNOWN)
    r.initialize_state(read_decision=board.read, stats_period_s=0.01)
    return r


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_the_draining_replica_is_ranked_last_and_released_when_the_board_says_so() -> None:
    async def run() -> None:
        board = FakeBoard(draining="r0")
        r = router(board)
        replicas = [replica("r0"), replica("r1"), replica("r2")]
        await r.choose_replicas(replicas)  # starts the watch
        await until(lambda: r.core.draining == {"r0"})
        for _ in range(20):
            ranked = await r.choose_replicas(replicas)
            assert [x[0].replica_id.unique_id for x in ranked][-1] == "r0"
        board.decision = decision(None)
        await until(lambda: not r.core.draining)
        r._draining.stop()

    asyncio.run(run())


def test_routing_never_waits_for_the_board() -> None:
    async def run() -> None:
        board = FakeBoard(draining="r0")
        board.gate.clear()  # every read blocks
        r = router(board)
        start = time.monotonic()
        for _ in range(50):
            ranked = await r.choose_replicas([replica("r0"), replica("r1")])
            assert len(ranked) == 2
        assert time.monotonic() - start < 1.0
        assert not r.core.draining  # nothing read yet: nothing drains
        board.gate.set()
        await until(lambda: r.core.draining == {"r0"})
        r._draining.stop()

    asyncio.run(run())


def test_a_failed_read_keeps_the_set_and_logs_once(caplog) -> None:
    async def run() -> None:
        board = FakeBoard(draining="r1")
        applied: list[frozenset[str]] = []
        watch = DrainingWatch(board.read, lambda ids: applied.append(frozenset(ids)), 0.01)
        await watch.refresh()
        board.fail = True
        for _ in range(3):
            await watch.refresh()
        assert applied == [{"r1"}]
        board.fail = False
        board.decision = decision(None)
        await watch.refresh()
        assert applied == [{"r1"}, frozenset()]

    with caplog.at_level("INFO", logger="serve.routing.draining_watch"):
        asyncio.run(run())
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "scaling decision" in warnings[0].getMessage()


def test_no_board_or_a_stale_decision_drains_nothing() -> None:
    async def run() -> None:
        applied: list[frozenset[str]] = []
        watch = DrainingWatch(lambda: None, lambda ids: applied.append(frozenset(ids)), 0.01)
        await watch.refresh()
        stale = decision("r2", age_s=STALE_S + 1)
        watch.read = lambda: stale
        await watch.refresh()
        assert applied == [frozenset(), frozenset()]

    asyncio.run(run())
