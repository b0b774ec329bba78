"""The stats contract: a reference engine and the simulator's replica model, put in the same
request states, report the same routing and autoscaling stats, field for field.

The engine runs the tiny checkpoint one loop iteration at a time under a clock that moves one
fixed step time per model step; the replica model gets a spec that makes the same step time
(no per-stream cost, no prefill cost beyond the step) and the same requests at the same times,
with the chain hashes of the same prompt tokens as their blocks. Outputs are greedy with
`ignore_eos`, so each request generates exactly its `max_tokens`.

The model prefills as a fluid (a prompt of u uncached tokens takes u / chunk of a step) where
the engine takes whole steps, so every prompt here leaves exactly one chunk uncached: fresh
prompts are one chunk long, and the others extend a cached prefix by one chunk. Both caches
have room for every block the scenario makes, so neither evicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.block_hash import block_hashes
from serve.engine.load_meter import TTFT_THRESHOLDS_S
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.engine.reference.executor import LocalExecutor, ModelExecutor
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_runner import StepItem
from serve.engine.reference.tokenizer import Tokenizer
from serve.engine.replica_stats import autoscaling_stats, routing_stats, ttft_over_key
from sim.replica_model import ReplicaModel, ReplicaSpec, SimRequest

STEP_S = 0.25  # a binary fraction: every time in the scenario is exact in floating point
PAGE = 16
CHUNK = 40  # not a page multiple, so streams hold partly filled pages
KV_PAGES = 64
MAX_RUNNING = 3
STARTUP_S = 7.0

CONFIG = EngineConfig(page_size=PAGE, kv_pages=KV_PAGES, max_running=MAX_RUNNING,
                      max_batched_tokens=64, max_model_len=512)
SPEC = ReplicaSpec(prefill_tokens_per_s=math.inf, step_base_s=STEP_S, step_per_seq_s=0.0,
                   prefill_chunk_tokens=CHUNK, max_running=MAX_RUNNING,
                   kv_capacity_tokens=KV_PAGES * PAGE, host_cache_tokens=0, block_tokens=PAGE,
                   cold_start_s=STARTUP_S)

# What a report says of the replica's configuration. Every other field must change during
# the scenario, or comparing it would prove nothing.
CONSTANT = {"kv_pages_total", "page_size", "max_running", "kv_tokens_total", "startup_s",
            "ready_at"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SteppedExecutor(ModelExecutor):
    """Runs the real model, then moves the clock on by one step time."""

    num_ranks = 1

    def __init__(self, inner: LocalExecutor, clock: Clock) -> None:
        self.inner, self.clock = inner, clock

    def run(self, batches: Sequence[Sequence[StepItem]]) -> list[torch.Tensor | None]:
        logits = self.inner.run(batches)
        self.clock.now += STEP_S
        return logits

    def expert_counts(self) -> list[list[int]]:
        return self.inner.expert_counts()


@dataclass
class Arrival:
    at: float
    prompt: list[int]
    max_tokens: int
    output: list[int] = field(default_factory=list)
    finish: str | None = None


class Lockstep:
    """A reference engine and a replica model given the same requests at the same times,
    their reports compared at every engine step and every idle second."""

    def __init__(self, transformer: Transformer, tokenizer: Tokenizer,
                 spec: ReplicaSpec = SPEC) -> None:
        self.clock = Clock()
        executor = SteppedExecutor(LocalExecutor(transformer, KV_PAGES, PAGE), self.clock)
        self.engine = ReferenceEngine(transformer, tokenizer, CONFIG, executor=executor,
                                      clock=self.clock, start_thread=False)
        self.model = ReplicaModel(0, spec)
        self.arrivals: dict[str, Arrival] = {}
        self.sims: dict[str, SimRequest] = {}
        self.done: list[SimRequest] = []
        self.tasks: list[asyncio.Task] = []
        # Every compared value, by report and field (None: the autoscaling dict left it out).
        self.history: dict[str, list[Any]] = {}
        self.compared = 0
        self.seen: set[str] = set()  # the request states the comparisons covered

    async def run_until(self, t: float) -> None:
        while self.clock.now < t:
            for name, arrival in self.arrivals.items():
                if arrival.at == self.clock.now and name not in self.sims:
                    self._submit(name, arrival)
            await _let_callers_run()
            before = self.clock.now
            self.engine.run_once()
            if self._busy():  # the snapshot of the step that began at `before`
                self._compare(f"t={before}")
            await _let_callers_run()
            self._teach_output_blocks()
            if self.clock.now == before:  # idle: no step to run, but time passes
                self.clock.now = min(t, before + 1.0, self._next_arrival(before))
                self.engine.run_once()
            self.model.advance(self.clock.now, self.done)
            if not self._busy():  # an idle engine's snapshot is of its last moment
                self._compare(f"t={self.clock.now}, idle")

    async def finish(self) -> None:
        await asyncio.gather(*self.tasks)
        await self.engine.shutdown()

    def _busy(self) -> bool:
        s = self.engine.stats()
        return bool(s.running or s.waiting)

    def _submit(self, name: str, arrival: Arrival) -> None:
        sampling = SamplingParams(max_tokens=arrival.max_tokens, temperature=0.0,
                                  ignore_eos=True)
        request = GenerationRequest(name, tuple(arrival.prompt), sampling)
        self.tasks.append(asyncio.ensure_future(self._consume(request, arrival)))
        self.sims[name] = sim = SimRequest(
            rid=len(self.sims), arrival=arrival.at, prompt_tokens=len(arrival.prompt),
            output_tokens=arrival.max_tokens, blocks=tuple(block_hashes(arrival.prompt, PAGE)),
            max_tokens=arrival.max_tokens)
        self.model.submit(sim, self.done)

    async def _consume(self, request: GenerationRequest, arrival: Arrival) -> None:
        async for delta in self.engine.generate(request):
            arrival.output.extend(delta.token_ids)
            arrival.finish = delta.finish_reason

    def _teach_output_blocks(self) -> None:
        """A finished stream's pages hold its prompt and all but its last output token; the
        model learns their hashes once the engine has made those tokens, before the model's
        copy of the stream ends."""
        for name, arrival in self.arrivals.items():
            sim = self.sims.get(name)
            if arrival.finish is not None and sim is not None and not sim.output_blocks:
                computed = arrival.prompt + arrival.output[:-1]
                sim.output_blocks = tuple(block_hashes(computed, PAGE)[len(sim.blocks):])

    def _next_arrival(self, now: float) -> float:
        return min((a.at for name, a in self.arrivals.items()
                    if name not in self.sims and a.at > now), default=math.inf)

    def _compare(self, when: str) -> None:
        stats = self.engine.stats()
        reports = [
            ("routing", routing_stats(stats), self.model.routing_stats()),
            ("autoscaling", autoscaling_stats(stats, startup_s=STARTUP_S,
                                              ready_at=self.model.ready_at),
             self.model.autoscaling_stats()),
        ]
        for kind, live, modelled in reports:
            assert live.keys() == modelled.keys(), f"{kind} stats at {when}"
            for name in self.history.keys() - {f"{kind}.{n}" for n in live}:
                if name.startswith(kind):
                    self.history[name].append(None)
            for name, value in live.items():
                other = modelled[name]
                if name == "cached_block_hashes":
                    # A set of blocks in a tuple: the engine lists them sorted, the model in
                    # LRU order.
                    value, other = sorted(value), sorted(other)
                # Floats too must be equal: every time here is a multiple of a binary
                # fraction, so both sums are exact whatever pieces they are added in.
                assert value == other, f"{kind} stats: {name} at {when}"
                self.history.setdefault(f"{kind}.{name}", [None] * self.compared).append(value)
        self.compared += 1
        if stats.waiting:
            self.seen.add("waiting")
        if stats.running > 1:
            self.seen.add("several running")
        if stats.queued_prefill_tokens and stats.running:
            self.seen.add("prefilling")
        if stats.running and stats.decode_bound_tokens:
            self.seen.add("mid-decode")
        if stats.generation_tokens_per_s and not stats.running:
            self.seen.add("finished")


async def _let_callers_run() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _tokens(n: int, g: torch.Generator, vocab: int) -> list[int]:
    return torch.randint(2, vocab, (n,), generator=g).tolist()


@pytest.fixture(scope="module")
def model(tiny_fp32_dir):
    engine = ReferenceEngine.from_checkpoint(tiny_fp32_dir, EngineConfig(kv_pages=8))
    asyncio.run(engine.shutdown())
    return engine.model, engine.tokenizer


def test_engine_and_replica_model_report_the_same_stats(model):
    transformer, tokenizer = model
    vocab = transformer.args.vocab_size
    g = torch.Generator().manual_seed(11)
    pair = Lockstep(transformer, tokenizer)
    a = _tokens(CHUNK, g, vocab)
    pair.arrivals.update({
        "a": Arrival(0.0, a, 10),
        "b": Arrival(0.5, a[:32] + _tokens(CHUNK, g, vocab), 14),  # two cached blocks of a's
        "c": Arrival(0.75, _tokens(CHUNK, g, vocab), 8),
        "e": Arrival(1.0, _tokens(CHUNK, g, vocab), 5),  # waits: three streams run
        "f": Arrival(5.25, _tokens(CHUNK, g, vocab), 1),  # done in its prefill step
    })

    async def main() -> None:
        await pair.run_until(4.5)
        # The next turn of a's conversation resends a's prompt and output: it finds a's
        # prompt and the page its output began in the cache (48 tokens), then adds a chunk.
        a_turn = pair.arrivals["a"].prompt + pair.arrivals["a"].output
        pair.arrivals["d"] = Arrival(5.0, a_turn + _tokens(48 + CHUNK - len(a_turn), g, vocab),
                                     6)
        await pair.run_until(12.0)  # past the 10 s throughput window of the first steps
        await pair.run_until(70.0)  # past the 60 s arrival window
        await pair.finish()

    asyncio.run(main())
    assert pair.seen == {"waiting", "several running", "prefilling", "mid-decode", "finished"}
    assert all(len(a.output) == a.max_tokens for a in pair.arrivals.values())
    assert (pair.sims["b"].cached_tokens, pair.sims["d"].cached_tokens) == (32, 48)
    unchanged = {name for name, values in pair.history.items()
                 if all(v == values[0] for v in values)}
    # First tokens here take a step or two: the counts over longer TTFTs stay 0 (compared
    # all the same); those over the steps' own TTFTs must change.
    slowest = max(s.ttft for s in pair.sims.values())
    never_reached = {ttft_over_key(t, waiting) for t in TTFT_THRESHOLDS_S if t >= slowest
                     for waiting in (False, True)}
    unchanged_fields = {name.split(".", 1)[1] for name in unchanged}
    assert unchanged_fields <= CONSTANT | never_reached, unchanged
    assert not {ttft_over_key(TTFT_THRESHOLDS_S[0], w) for w in (False, True)} & unchanged_fields


def test_a_prompt_resent_whole_computes_its_last_page(model):
    """A prompt whose every page is cached still computes one (its last token samples the
    first output); with one page to a chunk, that page is the whole prefill in both."""
    transformer, tokenizer = model
    g = torch.Generator().manual_seed(12)
    pair = Lockstep(transformer, tokenizer, dataclasses.replace(SPEC, prefill_chunk_tokens=PAGE))
    x = _tokens(PAGE, g, transformer.args.vocab_size)
    y = x + _tokens(PAGE, g, transformer.args.vocab_size)
    pair.arrivals.update({"x": Arrival(0.0, x, 3), "y": Arrival(1.0, y, 4),
                          "y again": Arrival(3.0, y, 2)})

    async def main() -> None:
        await pair.run_until(5.0)
        await pair.finish()

    asyncio.run(main())
    assert pair.sims["y again"].cached_tokens == PAGE
