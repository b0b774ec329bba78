"""`stream_batches`: several engine steps to one Ray message, nothing lost, nothing held back
at the ends of a stream."""

from __future__ import annotations

import asyncio

import pytest

from serve.config import R1ServeConfig
from serve.engine.base import TokenDelta
from serve.engine.deployment import EngineDeployment
from serve.engine.stream_batches import stream_batches


async def _steps(n: int, step_s: float, log: list[str] | None = None):
    """An engine stream: item 0 at once, then one item every `step_s`."""
    try:
        for i in range(n):
            if i:
                await asyncio.sleep(step_s)
            yield i
    finally:
        if log is not None:
            log.append("closed")


async def _collect(gen) -> list[list]:
    return [batch async for batch in gen]


def test_steps_faster_than_the_interval_share_messages_and_the_first_goes_alone():
    batches = asyncio.run(_collect(stream_batches(_steps(20, 0.002), interval_s=0.05)))
    assert [i for b in batches for i in b] == list(range(20))
    assert batches[0] == [0]  # the first token is not held back for the ones after it
    assert len(batches) < 20


def test_zero_interval_sends_every_item_alone():
    batches = asyncio.run(_collect(stream_batches(_steps(5, 0.001), interval_s=0)))
    assert batches == [[0], [1], [2], [3], [4]]


def test_the_end_of_the_stream_is_sent_at_once_not_after_the_interval():
    async def run():
        # With a minute's interval, waiting out the interval before the last items would
        # trip the 10 s bound.
        return await asyncio.wait_for(_collect(stream_batches(_steps(4, 0.01), 60.0)), 10)

    batches = asyncio.run(run())
    assert batches == [[0], [1, 2, 3]]


def test_an_error_of_the_source_follows_everything_it_yielded():
    async def failing():
        yield "a"
        await asyncio.sleep(0.001)
        yield "b"
        raise ValueError("engine failed")

    async def run():
        seen = []
        with pytest.raises(ValueError, match="engine failed"):
            async for batch in stream_batches(failing(), interval_s=0.05):
                seen.extend(batch)
        return seen

    assert asyncio.run(run()) == ["a", "b"]


@pytest.mark.parametrize("interval_s", [0.0, 0.02])
def test_closing_the_stream_closes_the_engine_stream(interval_s):
    log: list[str] = []

    async def run():
        gen = stream_batches(_steps(1000, 0.01, log), interval_s=interval_s)
        first = await gen.__anext__()
        await gen.aclose()  # what Serve does when the caller cancels
        return first, list(log)  # closed by now, not only when the loop shuts down

    assert asyncio.run(run()) == ([0], ["closed"])


class _FastEngine:
    """Every delta of a request ready at once, as when decode outpaces the Ray hop."""

    def __init__(self, n: int) -> None:
        self.deltas = [TokenDelta("r", (i,), f"t{i} ") for i in range(n)]

    async def generate(self, request):
        for d in self.deltas:
            await asyncio.sleep(0)
            yield d


# Serve awaits the replica's async __del__ (the drain deadline); a bare object never does.
@pytest.mark.filterwarnings("ignore:coroutine 'EngineDeployment.__del__' was never awaited")
@pytest.mark.parametrize("interval_ms", [0.0, 20.0])
def test_engine_deployment_streams_lists_of_every_delta(interval_ms):
    config = R1ServeConfig.from_dict({"engine": {"stream_batching_interval_ms": interval_ms}})
    engine = _FastEngine(32)
    deployment = EngineDeployment(config.model_dump(), engine=engine)
    batches = asyncio.run(_collect(deployment.generate(None)))
    assert [d for b in batches for d in b] == engine.deltas
    if interval_ms == 0:
        assert len(batches) == 32
    else:
        assert len(batches) < 32
