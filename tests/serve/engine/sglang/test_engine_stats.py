"""What `SGLangEngine.stats()` reports: the meter fed from the stream chunks' timing, and
SGLang's per-rank loads (and the prefill work they count) merged over it. SGLang is played by
recorded streams, each chunk arriving one clock tick after the last."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.sglang.engine import SGLangEngine

DATA = Path(__file__).parent / "data"
TICK_S = 0.05


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TickingBackend:
    """Plays a recorded SGLang stream, moving the clock one tick before each chunk."""

    def __init__(self, recording: str, clock: Clock) -> None:
        self.chunks = json.loads((DATA / recording).read_text())["chunks"]
        self.clock = clock
        self.tokenizer_manager = self
        self.loads: list[dict[str, Any]] = []

    async def async_generate(self, **kwargs):
        async def stream():
            for chunk in self.chunks:
                self.clock.now += TICK_S
                yield chunk
        return stream()

    async def get_loads(self) -> list[dict[str, Any]]:
        return self.loads

    def abort_request(self, rid: str = "", abort_all: bool = False) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _run(engine: SGLangEngine, max_tokens: int = 32) -> None:
    async def main() -> None:
        request = GenerationRequest("r1", (1, 2, 3), SamplingParams(max_tokens=max_tokens))
        async for _ in engine.generate(request):
            pass
    asyncio.run(main())


def test_chunk_timing_gives_ttft_inter_token_latency_and_rates() -> None:
    clock = Clock()
    engine = SGLangEngine(TickingBackend("stop_string.json", clock), page_size=16,
                          context_length=1024, clock=clock)
    _run(engine)
    s = engine.stats()
    # Chunks of 4, 4, 3, 3 and 2 tokens, one tick apart: the first (its first token after one
    # tick) opens the stream; the 12 tokens after it took 4 ticks.
    assert s.ttft_p90_s == s.ttft_p99_s == pytest.approx(TICK_S)
    assert s.itl_mean_s == pytest.approx(4 * TICK_S / 12)
    assert s.generation_tokens_per_s == pytest.approx(12 / 1.0)  # up for less than a second
    assert s.arrival_requests_per_s == pytest.approx(1.0)
    assert s.arrival_prompt_tokens_per_s == pytest.approx(3.0)
    assert (s.prompt_tokens, s.prefix_cache_hit_tokens) == (21, 0)  # as SGLang counted them
    assert engine.meter.lengths.observations == 1


def test_expected_decode_comes_from_the_learnt_lengths() -> None:
    clock = Clock()
    engine = SGLangEngine(TickingBackend("length_logprobs.json", clock), page_size=16,
                          context_length=1024, clock=clock)
    for _ in range(300):  # requests that reach their max_tokens of 5
        _run(engine, max_tokens=5)
    lengths = engine.meter.lengths
    assert lengths.observations == 300
    # A request with room for 4096 tokens is now expected to stop near 5, not at 4096 nor
    # near the R1 prior's thousands (whose weight of a few requests is not yet all gone).
    assert lengths.expected_total(4096) < 100


def test_loads_give_the_schedulers_view_and_the_prefill_work() -> None:
    clock = Clock()
    backend = TickingBackend("length_logprobs.json", clock)
    backend.loads = [{"dp_rank": 0, "timestamp": 1.0, "num_running_reqs": 2,
                      "num_waiting_reqs": 5, "num_used_tokens": 100,
                      "max_total_num_tokens": 6400, "num_waiting_uncached_tokens": 900,
                      "max_running_requests": 64, "total_prefill_uncached_tokens": 1000,
                      "total_prefill_busy_us": 500_000}]
    engine = SGLangEngine(backend, page_size=16, context_length=1024, clock=clock,
                          poll_interval_s=0.01)

    async def main() -> None:
        await engine.health()  # starts the load poller; its first read sets the baseline
        await asyncio.sleep(0.05)
        backend.loads = [{**backend.loads[0], "timestamp": 2.0,
                          "total_prefill_uncached_tokens": 5000,
                          "total_prefill_busy_us": 1_500_000}]
        await asyncio.sleep(0.05)
        await engine.shutdown()

    asyncio.run(main())
    s = engine.stats()
    assert (s.running, s.waiting, s.queued_prefill_tokens, s.max_running) == (2, 5, 900, 64)
    assert (s.kv_pages_used, s.kv_pages_total) == (7, 400)
    assert s.prefill_capacity_tokens_per_s == pytest.approx(4000.0)  # 4000 tokens in 1 s
    assert s.prefill_tokens_per_s == pytest.approx(4000.0)  # over the 1 s it has been up
