"""`ReferenceEngine`: the pure-PyTorch engine behind the `Engine` interface.

One background thread owns the scheduler, the KV cache and the model; requests enter through a
locked inbox and leave as `TokenDelta`s posted to each caller's asyncio queue, so no caller
ever blocks the step loop and the step loop never waits on a caller.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
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
from serve.engine.reference.checkpoint import load_model_args, load_state_dict
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_runner import ModelRunner, StepItem
from serve.engine.reference.output_stream import OutputStream
from serve.engine.reference.sampler import sample
from serve.engine.reference.scheduler import ScheduledItem, Scheduler, SchedulerConfig
from serve.engine.reference.sequence import Sequence
from serve.engine.reference.tokenizer import Tokenizer
from serve.errors import ConfigError, ContextLengthError, EngineDeadError, InvalidRequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Capacity and batching knobs of the reference engine."""

    page_size: int = 16  # tokens per KV page; also the prefix-cache block size
    kv_pages: int = 4096  # KV budget in pages
    max_running: int = 64  # requests decoding at once
    max_batched_tokens: int = 512  # tokens per step; longer prompts are prefilled in chunks
    max_model_len: int = 32768  # context length (prompt + output), capped by the model's
    prefix_cache: bool = True

    def __post_init__(self) -> None:
        for name in ("page_size", "kv_pages", "max_running", "max_batched_tokens",
                     "max_model_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"engine {name}={getattr(self, name)} must be at least 1")
        if self.max_running > self.max_batched_tokens:
            raise ConfigError(
                f"engine max_running ({self.max_running}) exceeds max_batched_tokens "
                f"({self.max_batched_tokens}): every running request decodes one token per "
                "step; lower max_running or raise max_batched_tokens")


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TokenDelta | BaseException]


class ReferenceEngine(Engine):
    def __init__(self, model: Transformer, tokenizer: Tokenizer,
                 config: EngineConfig = EngineConfig()) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.args = model.args
        self.config = config
        self.max_model_len = min(config.max_model_len, self.args.max_position_embeddings)
        self.scheduler = Scheduler(SchedulerConfig(
            page_size=config.page_size, num_pages=config.kv_pages,
            max_running=config.max_running, max_batched_tokens=config.max_batched_tokens,
            prefix_cache=config.prefix_cache))
        self.runner = ModelRunner(model, config.kv_pages, config.page_size)
        self._arrivals = itertools.count()
        self._cv = threading.Condition()
        self._inbox: list[tuple[Sequence, OutputStream, _Stream]] = []
        self._aborts: list[str] = []
        self._streams: dict[str, _Stream] = {}  # every request not yet finished
        self._live: dict[str, tuple[Sequence, OutputStream]] = {}  # engine thread only
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._stats = self._snapshot()
        self._stats_at = 0.0
        self._dead: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="r1serve-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        config: EngineConfig = EngineConfig()) -> ReferenceEngine:
        """Load config.json, weights and tokenizer from a Hugging Face checkpoint dir."""
        args = load_model_args(path)
        with torch.device("meta"):
            model = Transformer(args)
        model.load_state_dict(load_state_dict(path, args, dtype=torch.float32),
                              strict=True, assign=True)
        model.eval()
        return cls(model, Tokenizer.from_dir(path), config)

    # -- Engine interface --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        self._validate(request)
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        seq = Sequence(request, arrival=next(self._arrivals))
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

    def _snapshot(self) -> EngineStats:
        """Taken on the engine thread, which alone touches the scheduler."""
        s = self.scheduler
        now = time.monotonic()
        recent = [n for t, n in list(self._recent) if now - t <= 10.0]
        return EngineStats(
            running=len(s.running), waiting=len(s.waiting),
            kv_pages_used=s.pages_in_use(), kv_pages_total=self.config.kv_pages,
            page_size=self.config.page_size, queued_prefill_tokens=s.queued_prefill_tokens(),
            expected_remaining_decode_tokens=s.expected_remaining_decode(),
            prefix_cache_hit_tokens=s.prefix_hit_tokens, prompt_tokens=s.prompt_tokens,
            generation_tokens_per_s=sum(recent) / 10.0,
            cached_block_hashes=tuple(s.cache.block_hashes()),
        )

    async def health(self) -> None:
        if self._dead is not None or not self._thread.is_alive():
            raise EngineDeadError(f"reference engine stopped: {self._dead!r}")

    async def shutdown(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join)

    # -- validation --------------------------------------------------------------------------

    def _validate(self, request: GenerationRequest) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"reference engine stopped: {self._dead!r}")
        ids = request.prompt_token_ids
        if not ids:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        vocab = self.args.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the vocabulary [0, {vocab})", param="prompt")
        request.sampling.validate()
        total = len(ids) + request.sampling.max_tokens
        if total > self.max_model_len:
            raise ContextLengthError(
                f"prompt ({len(ids)} tokens) plus max_tokens ({request.sampling.max_tokens}) is "
                f"{total} tokens, over the context length of {self.max_model_len}; shorten the "
                "prompt or lower max_tokens", param="max_tokens")
        capacity = self.config.kv_pages * self.config.page_size
        if total > capacity:
            raise InvalidRequestError(
                f"prompt plus max_tokens ({total} tokens) exceeds the KV cache ({capacity} "
                "tokens); lower max_tokens or raise the engine's kv_pages", param="max_tokens")

    # -- engine thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while not (self._inbox or self._aborts or self._stopping
                               or self.scheduler.has_work()):
                        self._cv.wait()
                    if self._stopping:
                        break
                    inbox, self._inbox = self._inbox, []
                    aborts, self._aborts = self._aborts, []
                for seq, out, _ in inbox:
                    self._live[seq.request_id] = (seq, out)
                    self.scheduler.add(seq)
                for request_id in aborts:
                    if request_id in self._live:
                        self._finish(request_id, "abort", TokenDelta(request_id, (), "",
                                                                     finish_reason="abort"))
                if self.scheduler.has_work():
                    self.step()
                now = time.monotonic()
                if now - self._stats_at > 0.1 or not self.scheduler.has_work():
                    self._stats, self._stats_at = self._snapshot(), now
            self._fail_all(EngineDeadError("the engine was shut down"))
        except BaseException as e:  # a bug must not leave any request hanging
            log.exception("reference engine step failed")
            self._dead = e
            self._fail_all(EngineDeadError(f"reference engine failed: {e!r}"))

    def step(self) -> None:
        """Schedule, run the model, sample, emit: one iteration of continuous batching."""
        items = self.scheduler.schedule()
        if not items:
            raise RuntimeError("scheduler found work but scheduled nothing")
        logits = self.runner.run([self._step_item(it) for it in items])
        for it in items:
            self.scheduler.complete(it)
        rows = [i for i, it in enumerate(items) if it.samples]
        if not rows:
            return
        seqs = [items[i].seq for i in rows]
        out = sample(logits[rows], [s.request.sampling for s in seqs],
                     [s.generator for s in seqs])
        for seq, token, logprob in zip(seqs, out.token_ids, out.logprobs, strict=True):
            self._emit(seq, token, logprob)
        self._recent.append((time.monotonic(), len(rows)))
        while self._recent and time.monotonic() - self._recent[0][0] > 10.0:
            self._recent.popleft()

    @staticmethod
    def _step_item(it: ScheduledItem) -> StepItem:
        tokens = it.seq.token_ids[it.start:it.start + it.num_tokens]
        return StepItem(tokens, it.start, it.seq.pages)

    def _emit(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> None:
        seq.token_ids.append(token)
        _, out = self._live[seq.request_id]
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
        seq, _ = self._live.pop(request_id)
        self.scheduler.finish(seq)
        self._post(request_id, delta)
        with self._cv:
            self._streams.pop(request_id, None)

    def _post(self, request_id: str, item: TokenDelta | BaseException) -> None:
        stream = self._streams.get(request_id)
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
