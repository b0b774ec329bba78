"""`ReferenceEngine`: the pure-PyTorch engine behind the `Engine` interface.

One background thread owns the schedulers and drives the model executor; requests enter through a
locked inbox and leave as `TokenDelta`s posted to each caller's asyncio queue, so no caller
ever blocks the step loop and the step loop never waits on a caller.

The same thread tells the engine's `LoadMeter` what happens (arrivals, cache hits, each step's
work, first tokens, finishes) and builds the `EngineStats` snapshot from it, so the reference
engine reports exactly what the simulator's replica model reports for the same request states.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from serve.engine.base import (
    Engine,
    EngineStats,
    GenerationRequest,
    TokenDelta,
    TokenLogprob,
    Usage,
)
from serve.engine.load_meter import LoadMeter
from serve.engine.reference.architecture import build_model
from serve.engine.reference.checkpoint import load_model_args, load_state_dict
from serve.engine.reference.engine_config import EngineConfig
from serve.engine.reference.executor import LocalExecutor, ModelExecutor
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.model_runner import StepItem
from serve.engine.reference.output_stream import OutputStream
from serve.engine.reference.sampler import sample
from serve.engine.reference.scheduler import ScheduledItem, Scheduler
from serve.engine.reference.sequence import Sequence
from serve.engine.reference.tokenizer import Tokenizer
from serve.errors import EngineDeadError, EngineFailedError, InvalidRequestError

log = logging.getLogger(__name__)

# Prefill tokens one running request's decoding is worth when choosing a data-parallel rank.
_DECODE_COST = 16
# A busy engine rebuilds its stats snapshot at most this often: Serve reads them every few
# seconds, and a snapshot walks every request and cached block.
_STATS_INTERVAL_S = 0.1


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TokenDelta | BaseException]


class ReferenceEngine(Engine):
    """Schedules every data-parallel rank here; the executor runs their forward passes.

    With one rank (`ReferenceEngine(model, tokenizer, config)`) the model runs in this
    process; with expert parallelism each rank is a Ray actor holding its own KV cache and
    its share of the experts (see `ep_engine.start_ep_engine`).

    `clock` times everything the stats report (arrivals, steps, time to first token). With
    `start_thread=False` no background thread runs: the caller drives the engine one loop
    iteration at a time with `run_once()`, as tests that put it in exact states do.
    """

    def __init__(self, model: Transformer | None, tokenizer: Tokenizer,
                 config: EngineConfig | None = None, *, executor: ModelExecutor | None = None,
                 args: ModelArgs | None = None, clock: Callable[[], float] = time.monotonic,
                 start_thread: bool = True) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.args = args or model.args
        self.config = config = config or EngineConfig()
        self.max_model_len = min(config.max_model_len, self.args.max_position_embeddings)
        self.executor = executor or LocalExecutor(model, config.kv_pages, config.page_size)
        self._clock = clock
        self.meter = LoadMeter(now=clock())  # touched on the engine thread only
        self.schedulers = [Scheduler(config, self.meter) for _ in range(self.executor.num_ranks)]
        self._arrivals = itertools.count()
        self._cv = threading.Condition()
        self._inbox: list[tuple[Sequence, OutputStream, _Stream]] = []
        self._aborts: list[str] = []
        self._streams: dict[str, _Stream] = {}  # every request not yet finished
        self._live: dict[str, tuple[Sequence, OutputStream, int]] = {}  # engine thread only
        self._stats, self._stats_at = self._snapshot(clock()), -math.inf
        self._dead: BaseException | None = None
        self._stopping = False
        self._stop_reason = "the engine was shut down"
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._loop, name="r1serve-engine",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        config: EngineConfig | None = None) -> ReferenceEngine:
        """Load config.json, weights and tokenizer from a Hugging Face checkpoint dir."""
        args = load_model_args(path)
        with torch.device("meta"):
            model = build_model(args)
        model.load_state_dict(load_state_dict(path, args, dtype=torch.float32),
                              strict=True, assign=True)
        model.eval()
        return cls(model, Tokenizer.from_dir(path), config)

    # -- Engine interface --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        self._validate(request)
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        seq = Sequence(request, arrival=next(self._arrivals), arrival_time=self._clock())
        out = OutputStream(request, self.tokenizer, self.max_model_len, self.args.eos_token_id)
        with self._cv:
            if request.request_id in self._streams:
                raise InvalidRequestError(
                    f"request id {request.request_id!r} is already in flight", param="request_id")
            self._streams[request.request_id] = stream
            self._inbox.append((seq, out, stream))
            self._cv.notify()
        finished = False
        try:
            while not finished:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finish_reason is not None
                yield item
        finally:
            if not finished:  # the caller went away: free the request's pages now
                self._request_abort(request.request_id)

    async def abort(self, request_id: str) -> None:
        self._request_abort(request_id)

    def stats(self) -> EngineStats:
        return self._stats

    def _snapshot(self, now: float) -> EngineStats:
        """Taken on the engine thread, which alone touches the schedulers: every rank's
        requests and pages, as one instance."""
        ss = self.schedulers
        hashes: set[int] = set()
        for s in ss:
            hashes.update(s.kv_cache.block_hashes())
        return self.meter.snapshot(
            now, [q.stream_state() for s in ss for q in (*s.running, *s.waiting)],
            kv_pages_used=sum(s.kv_cache.pages_in_use() for s in ss),
            kv_pages_total=self.config.kv_pages * len(ss), page_size=self.config.page_size,
            max_running=self.config.max_running * len(ss),
            cached_block_hashes=tuple(sorted(hashes)))

    def _has_work(self) -> bool:
        return any(s.has_work() for s in self.schedulers)

    def _assign_rank(self, seq: Sequence) -> int:
        """The data-parallel rank for a new request: least estimated work, counting the prompt
        tokens a rank's prefix cache already holds as free, so a long cached prefix wins unless
        that rank is much busier."""
        if len(self.schedulers) == 1:
            return 0

        def cost(rank: int) -> tuple[int, int]:
            s = self.schedulers[rank]
            hit = s.kv_cache.cached_prefix_tokens(seq.token_ids[:-1])
            busy = s.queued_prefill_tokens() + _DECODE_COST * len(s.running)
            return len(seq.token_ids) - hit + busy, len(s.running) + len(s.waiting)
        return min(range(len(self.schedulers)), key=cost)

    def expert_counts(self) -> list[list[int]]:
        """Tokens routed to each expert per MoE layer so far, over all ranks: the load that
        `r1serve eplb --load` balances (`{"counts": engine.expert_counts()}`)."""
        return self.executor.expert_counts()

    async def health(self) -> None:
        if self._dead is not None:
            raise EngineFailedError(f"reference engine failed: {self._dead!r}")
        if self._thread is not None and not self._thread.is_alive():
            raise EngineDeadError("reference engine stopped")
        if not await asyncio.to_thread(self.executor.healthy):
            raise EngineDeadError("a rank of the reference engine is not alive")

    async def shutdown(self, reason: str = "the engine was shut down") -> None:
        with self._cv:
            self._stop_reason = reason
            self._stopping = True
            self._cv.notify()
        if self._thread is None:  # driven by run_once(): stop here
            self._fail_all(EngineDeadError(reason))
            self.executor.shutdown()
        else:
            await asyncio.to_thread(self._thread.join)

    # -- validation --------------------------------------------------------------------------

    def _validate(self, request: GenerationRequest) -> None:
        if self._dead is not None:
            raise EngineFailedError(f"reference engine failed: {self._dead!r}")
        request.validate(self.max_model_len, self.args.vocab_size)
        total = len(request.prompt_token_ids) + request.sampling.max_tokens
        capacity = self.config.kv_pages * self.config.page_size
        if total > capacity:
            raise InvalidRequestError(
                f"prompt plus max_tokens ({total} tokens) exceeds the KV cache ({capacity} "
                "tokens); lower max_tokens or raise the engine's kv_pages", param="max_tokens")

    # -- engine thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while self._wait_for_work():
                self.run_once()
            self._fail_all(EngineDeadError(self._stop_reason))
        except BaseException as e:  # a failed rank or a bug must not leave any request hanging
            log.exception("reference engine step failed")
            self._dead = e
            self._fail_all(EngineDeadError(f"reference engine failed: {e}"))
        finally:
            self.executor.shutdown()

    def _wait_for_work(self) -> bool:
        """Block until a request, an abort or a step is due; False once stopping."""
        with self._cv:
            while not (self._inbox or self._aborts or self._stopping or self._has_work()):
                self._cv.wait()
            return not self._stopping

    def run_once(self) -> None:
        """One iteration of the engine loop: admit new requests and aborts, then run one step
        if any rank has work. The engine thread calls it over and over; an engine built with
        `start_thread=False` is driven by calling it.

        The stats snapshot shows the batch in flight: it is taken once the step is scheduled
        (newly admitted requests run, the step's pages are reserved), or, when no work is
        left, at the end of the iteration."""
        with self._cv:
            inbox, self._inbox = self._inbox, []
            aborts, self._aborts = self._aborts, []
        now = self._clock()
        for seq, out, _ in inbox:
            rank = self._assign_rank(seq)
            self._live[seq.request_id] = (seq, out, rank)
            self.schedulers[rank].add(seq)
            self.meter.arrived(now, seq.prompt_len, seq.request.sampling.max_tokens)
        for request_id in aborts:
            if request_id in self._live:
                self._finish(request_id, "abort", TokenDelta(request_id, (), "",
                                                             finish_reason="abort"))
        if self._has_work():
            self.step()
        if not self._has_work():  # idle: show it now, and the next step afresh
            self._stats, self._stats_at = self._snapshot(self._clock()), -math.inf

    def step(self) -> None:
        """Schedule every rank, run them in lockstep, sample, emit: one iteration of
        continuous batching."""
        batches = [s.schedule() for s in self.schedulers]
        if not any(batches):
            raise RuntimeError("schedulers found work but scheduled nothing")
        started = self._clock()
        for items in batches:
            for it in items:
                if it.seq.prefill_started is None:
                    it.seq.prefill_started = started
        if started - self._stats_at > _STATS_INTERVAL_S:
            self._stats, self._stats_at = self._snapshot(started), started
        logits = self.executor.run([[self._step_item(it) for it in b] for b in batches])
        rows: list[torch.Tensor] = []
        seqs: list[Sequence] = []
        prefill_tokens = decode_tokens = 0
        for scheduler, items, rank_logits in zip(self.schedulers, batches, logits, strict=True):
            for i, it in enumerate(items):
                # One token after the first output is a decode; anything else computes prompt
                # (or, after a preemption, recomputes what the stream had).
                if it.num_tokens == 1 and it.seq.num_generated > 0:
                    decode_tokens += 1
                else:
                    prefill_tokens += it.num_tokens
                scheduler.complete(it)
                if it.samples:
                    rows.append(rank_logits[i])
                    seqs.append(it.seq)
        if seqs:
            out = sample(torch.stack(rows), [s.request.sampling for s in seqs],
                         [s.generator for s in seqs])
            now = self._clock()
            for seq, token, logprob in zip(seqs, out.token_ids, out.logprobs, strict=True):
                self._emit(seq, token, logprob, now)
        now = self._clock()
        self.meter.worked(now, now - started, now - started, prefill_tokens, decode_tokens)

    @staticmethod
    def _step_item(it: ScheduledItem) -> StepItem:
        tokens = it.seq.token_ids[it.start:it.start + it.num_tokens]
        return StepItem(tokens, it.start, it.seq.pages)

    def _emit(self, seq: Sequence, token: int, logprob: TokenLogprob | None,
              now: float) -> None:
        seq.token_ids.append(token)
        if seq.num_generated == 1:
            self.meter.first_token(now, now - seq.arrival_time,
                                   seq.prefill_started - seq.arrival_time)
        _, out, _ = self._live[seq.request_id]
        text, finish = out.append(token)
        usage = None
        if finish is not None:
            usage = Usage(prompt_tokens=seq.prompt_len, completion_tokens=seq.num_generated,
                          cached_tokens=seq.cached_prompt_tokens or 0)
        delta = TokenDelta(seq.request_id, (token,), text,
                           None if logprob is None else (logprob,), finish, usage)
        if finish is not None:
            self._finish(seq.request_id, finish, delta)
        else:
            self._post(seq.request_id, delta)

    def _finish(self, request_id: str, reason: str, delta: TokenDelta) -> None:
        seq, _, rank = self._live.pop(request_id)
        self.schedulers[rank].finish(seq)
        self.meter.finished(seq.num_generated, reason)
        with self._cv:  # gone before the caller sees the end, so its id is free for reuse
            stream = self._streams.pop(request_id, None)
        self._post(request_id, delta, stream)

    def _post(self, request_id: str, item: TokenDelta | BaseException,
              stream: _Stream | None = None) -> None:
        stream = stream or self._streams.get(request_id)
        if stream is None:
            return
        try:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed; nobody is listening
            pass

    def _request_abort(self, request_id: str) -> None:
        with self._cv:
            if request_id in self._streams:
                self._aborts.append(request_id)
                self._cv.notify()

    def _fail_all(self, error: BaseException) -> None:
        with self._cv:
            streams, self._streams = self._streams, {}
            self._inbox = []
        for stream in streams.values():
            try:
                stream.loop.call_soon_threadsafe(stream.queue.put_nowait, error)
            except RuntimeError:
                pass
        self._live.clear()
