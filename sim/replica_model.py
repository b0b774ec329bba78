"""`ReplicaModel`: a fluid model of one engine replica, for the simulator and the router replay.

Fast enough to replay an hour of traffic on a laptop: it moves from event to event (a prefill
ends, a stream ends) instead of from engine step to engine step. Between events every rate is
constant:

- Each engine step decodes one token for every running request and, while a prompt waits,
  computes up to `prefill_chunk_tokens` of it (chunked prefill):
  step time = step_base_s + step_per_seq_s * running (+ chunk / prefill_tokens_per_s).
- Prompts are prefilled one at a time in arrival order; one starts only when a running slot
  and KV room for its prompt are free.
- The prefix cache is an LRU of fixed-size blocks (the trace's hash ids), matched from the
  first block on, as a radix cache does, and never to the prompt's last token (an engine
  computes at least one token to sample from). A prompt's blocks are cached when its prefill
  ends, and again with its output's blocks when the stream ends, as an engine caches the
  pages it computed. Blocks are refreshed deepest first, so a prefix is most recent at its
  root and eviction takes leaves first, again as a radix cache does: what is left of a prompt
  is always a usable prefix. GPU capacity is the KV budget; blocks it evicts may drop to a
  host-memory tier, from which a hit costs `host_load_cost` of computing the token.
- Reports show the batch in flight, as an engine's do: a request whose prefill starts now
  runs, and KV pages in use are counted as an engine's allocator counts them during a step:
  each running request holds ceil(its prompt and generated tokens / block) pages (the newest
  token's KV is what the step writes), except that full prompt blocks running requests share
  are held once.
- All running requests decode at the same rate, so one shared counter of "tokens decoded per
  stream" and a heap of finish marks track them in O(log n) per event.

Not modelled: preemption when decode outgrows the KV cache (admission is by prompt size), the
KV held by running requests shrinking the prefix cache, and speculative decoding.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from serve.engine.base import EngineStats
from serve.engine.load_meter import LoadMeter, StreamState
from serve.engine.replica_stats import autoscaling_stats, routing_stats


@dataclass(frozen=True)
class ReplicaSpec:
    """Speeds and sizes of one model instance (defaults: R1 on one 8xH200 node, roughly)."""

    prefill_tokens_per_s: float = 20_000.0
    step_base_s: float = 0.025
    step_per_seq_s: float = 0.00025
    prefill_chunk_tokens: int = 8192
    max_running: int = 128
    kv_capacity_tokens: int = 600_000
    host_cache_tokens: int = 0  # host-memory tier of the prefix cache; 0: GPU only
    host_load_cost: float = 0.1
    block_tokens: int = 512
    cold_start_s: float = 180.0  # from scheduling a replica to serving (weights load)


@dataclass
class SimRequest:
    """One request of a replayed workload and what happened to it."""

    rid: int
    arrival: float
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...]  # prefix-identity hash of each block of the prompt
    max_tokens: int = 32768
    # Hashes of the blocks past `blocks` that the finished stream's KV fills (the end of the
    # prompt and the output), as a later prompt resending them names them; () when unknown.
    output_blocks: tuple[int, ...] = ()
    session: str | None = None
    replica: int = -1
    cached_tokens: int = 0
    prefill_at: float | None = None  # when its prefill began (queueing ends)
    first_token_at: float | None = None
    finished_at: float | None = None
    cut: bool = False  # ended by a drain deadline, not by finishing

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def itl(self) -> float | None:
        if self.finished_at is None or self.first_token_at is None or self.output_tokens < 2:
            return None
        return (self.finished_at - self.first_token_at) / (self.output_tokens - 1)


class ReplicaModel:
    """One replica's queue, running streams, KV use and prefix cache over simulated time."""

    def __init__(self, idx: int, spec: ReplicaSpec, now: float = 0.0) -> None:
        self.idx, self.spec, self.t = idx, spec, now
        self.queue: deque[SimRequest] = deque()
        self._head_work = 0.0  # token-equivalents left of the prompt being prefilled
        self._prefilling = False
        self._decoded = 0.0  # tokens decoded per running stream since the start
        self._heap: list[tuple[float, int, SimRequest]] = []
        self._start_mark: dict[int, float] = {}
        self._prompt_sum = 0  # prompt tokens of running requests (and the one prefilling)
        self._start_sum = 0.0  # sum of start marks of running requests
        self._pinned: dict[int, int] = {}  # full prompt blocks of running requests: how many
        self._gpu: OrderedDict[int, None] = OrderedDict()
        self._host: OrderedDict[int, None] = OrderedDict()
        self._gpu_blocks = spec.kv_capacity_tokens // spec.block_tokens
        self._host_blocks = spec.host_cache_tokens // spec.block_tokens
        self.busy_s = 0.0
        self.ready_at = now  # when it began serving (the fleet moves it past a cold start)
        self.meter = LoadMeter(now=now)  # what a live engine would measure and report
        self._changes = 0  # bumped by whatever may change a report
        self._report: tuple[float, int, EngineStats] | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._heap)

    @property
    def ongoing(self) -> int:
        return len(self._heap) + len(self.queue)

    @property
    def prompt_tokens(self) -> int:
        return self.meter.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        return self.meter.cached_tokens

    def kv_used(self) -> float:
        return self._prompt_sum + self.running * self._decoded - self._start_sum

    def _step_s(self) -> float:
        s = self.spec
        step = s.step_base_s + s.step_per_seq_s * self.running
        if self._prefilling:
            step += s.prefill_chunk_tokens / s.prefill_tokens_per_s
        return step

    def next_event(self) -> float:
        """When the next prefill or stream ends if nothing arrives; inf when idle."""
        step = self._step_s()
        t = float("inf")
        if self._prefilling:
            t = self.t + self._head_work * step / self.spec.prefill_chunk_tokens
        if self._heap:
            t = min(t, self.t + max(0.0, self._heap[0][0] - self._decoded) * step)
        return t

    # -- dynamics ---------------------------------------------------------------------------

    def start_serving(self, now: float) -> None:
        """Its cold start is over: it takes requests from `now`, and measures rates since."""
        self.ready_at = self.meter.created_at = now

    def advance(self, now: float, finished: list[SimRequest]) -> None:
        """Move to `now`, completing everything that ends on the way (appended to
        `finished`). Call with `now` no later than `next_event()` unless the replica is idle."""
        self._changes += 1
        while True:
            nxt = self.next_event()
            if nxt > now:
                self._flow(now)
                break
            self._flow(nxt)
            self._snap()
            self._settle(finished)
        self._settle(finished)

    def _snap(self) -> None:
        """At an event time, finish what ends there exactly (float rounding must not leave a
        sliver of work that no later time step can clear)."""
        step = self._step_s()
        if self._prefilling and self._head_work * step / self.spec.prefill_chunk_tokens <= 1e-9:
            self._head_work = 0.0
        if self._heap and (self._heap[0][0] - self._decoded) * step <= 1e-9:
            self._decoded = max(self._decoded, self._heap[0][0])

    def _flow(self, to: float) -> None:
        dt = to - self.t
        if dt <= 0:
            return
        step = self._step_s()
        decoded = prefilled = 0.0
        if self._heap:
            self._decoded += dt / step
            decoded = self.running * dt / step
        if self._prefilling:
            prefilled = dt * self.spec.prefill_chunk_tokens / step
            self._head_work -= prefilled
        if self._heap or self._prefilling:
            self.busy_s += dt
            self.meter.worked(to, dt, step, prefilled, decoded)
        self.t = to

    def _settle(self, finished: list[SimRequest]) -> None:
        eps = 1e-9
        while self._heap and self._heap[0][0] <= self._decoded + eps:
            _, _, req = heapq.heappop(self._heap)
            self._retire(req)
            req.finished_at = self.t
            finished.append(req)
        if self._prefilling and self._head_work <= eps:
            self._prefilling = False
            req = self.queue.popleft()
            req.first_token_at = self.t
            self.meter.first_token(self.t, self.t - req.arrival, req.prefill_at - req.arrival)
            self._cache_insert(req.blocks)
            mark = self._decoded + max(0, req.output_tokens - 1)
            self._start_mark[req.rid] = self._decoded
            self._start_sum += self._decoded
            heapq.heappush(self._heap, (mark, req.rid, req))
            if req.output_tokens <= 1:
                self._settle(finished)
        self._maybe_start_prefill()

    def _retire(self, req: SimRequest) -> None:
        self._start_sum -= self._start_mark.pop(req.rid)
        self._prompt_sum -= req.prompt_tokens
        for h in self._full_blocks(req):
            left = self._pinned[h] - 1
            if left > 0:
                self._pinned[h] = left
            else:
                self._pinned.pop(h, None)
        self._cache_insert(req.blocks + req.output_blocks)
        self.meter.finished(req.output_tokens,
                            "length" if req.output_tokens >= req.max_tokens else "stop")

    def _maybe_start_prefill(self) -> None:
        if self._prefilling or not self.queue:
            return
        req = self.queue[0]
        if self._heap and (self.running >= self.spec.max_running
                           or self.kv_used() + req.prompt_tokens > self.spec.kv_capacity_tokens):
            return  # wait for a stream to end
        gpu_hit, host_hit = self._cache_match(req.blocks, req.prompt_tokens)
        req.cached_tokens = gpu_hit + host_hit
        req.prefill_at = self.t
        self.meter.prefix_matched(req.prompt_tokens, req.cached_tokens)
        uncached = req.prompt_tokens - req.cached_tokens
        self._head_work = max(1.0, uncached + self.spec.host_load_cost * host_hit)
        self._prefilling = True
        self._prompt_sum += req.prompt_tokens
        for h in self._full_blocks(req):
            self._pinned[h] = self._pinned.get(h, 0) + 1

    def submit(self, req: SimRequest, finished: list[SimRequest]) -> None:
        """A request arrives now (call `advance(now)` first)."""
        self._changes += 1
        req.replica = self.idx
        self.queue.append(req)
        self.meter.arrived(self.t, req.prompt_tokens, req.max_tokens)
        self._maybe_start_prefill()

    # -- prefix cache -----------------------------------------------------------------------

    def held_tokens(self, blocks: tuple[int, ...], prompt_tokens: int) -> int:
        """Prompt tokens the cache holds now, GPU and host tiers together: what a prefill
        starting now would find. The LRU order is left as it is."""
        b = self.spec.block_tokens
        return self._held_blocks(blocks[:self._matchable(prompt_tokens)])[1] * b

    def _matchable(self, prompt_tokens: int) -> int:
        """Blocks of a prompt a match may cover: never its last token, which the engine
        computes to sample the first output token from (a radix cache matches prompt[:-1])."""
        return max(0, prompt_tokens - 1) // self.spec.block_tokens

    def _full_blocks(self, req: SimRequest) -> tuple[int, ...]:
        """The prompt's blocks an engine's cache can hold: whole blocks only."""
        return req.blocks[:req.prompt_tokens // self.spec.block_tokens]

    def _held_blocks(self, blocks: tuple[int, ...]) -> tuple[int, int]:
        """Leading blocks held in GPU memory, and in GPU memory followed by the host tier."""
        i = 0
        while i < len(blocks) and blocks[i] in self._gpu:
            i += 1
        j = i
        while j < len(blocks) and blocks[j] in self._host:
            j += 1
        return i, j

    def _cache_match(self, blocks: tuple[int, ...], prompt_tokens: int) -> tuple[int, int]:
        b = self.spec.block_tokens
        i, j = self._held_blocks(blocks[:self._matchable(prompt_tokens)])
        for h in reversed(blocks[:i]):  # the root ends most recent: leaves are evicted first
            self._gpu.move_to_end(h)
        return i * b, (j - i) * b

    def _cache_insert(self, blocks: tuple[int, ...]) -> None:
        for h in reversed(blocks):  # the root ends most recent: leaves are evicted first
            if h in self._gpu:
                self._gpu.move_to_end(h)
                continue
            self._gpu[h] = None
            self._host.pop(h, None)
        while len(self._gpu) > self._gpu_blocks:
            h, _ = self._gpu.popitem(last=False)
            if self._host_blocks:
                self._host[h] = None
        while len(self._host) > self._host_blocks:
            self._host.popitem(last=False)

    # -- what the replica reports -----------------------------------------------------------

    def _generated(self, req: SimRequest) -> int:
        """Tokens a running stream has generated: its first at the end of prefill, then one
        per decode step (a step that ends now counts, however the float sums rounded)."""
        steps = int(self._decoded - self._start_mark[req.rid] + 1e-6)
        return min(req.output_tokens, 1 + steps)

    def _kv_pages_used(self, generated: list[int]) -> int:
        """Pages the running requests hold during a step, as an engine's allocator counts
        them: each its ceil(tokens / block), the full prompt blocks they share once."""
        b = self.spec.block_tokens
        private = sum(math.ceil((r.prompt_tokens + g) / b) - min(len(r.blocks),
                                                                 r.prompt_tokens // b)
                      for (_, _, r), g in zip(self._heap, generated, strict=True))
        if self._prefilling:
            head = self.queue[0]
            private += math.ceil(head.prompt_tokens / b) - len(self._full_blocks(head))
        return len(self._pinned) + private

    def stats(self) -> EngineStats:
        """This replica's `EngineStats`, built by the `LoadMeter` as a live engine builds its
        own: the request being prefilled counts as running, as in the engine's batch. Built
        once per state: the routing and the autoscaling reports of one moment share it."""
        if self._report is not None and self._report[:2] == (self.t, self._changes):
            return self._report[2]
        stats = self._build_stats()
        self._report = (self.t, self._changes, stats)
        return stats

    def _build_stats(self) -> EngineStats:
        generated = [self._generated(r) for _, _, r in self._heap]
        streams = [StreamState(r.prompt_tokens, 0, g, r.max_tokens, True)
                   for (_, _, r), g in zip(self._heap, generated, strict=True)]
        for i, r in enumerate(self.queue):
            head = i == 0 and self._prefilling
            left = max(0, round(self._head_work)) if head else r.prompt_tokens
            streams.append(StreamState(r.prompt_tokens, left, 0, r.max_tokens, head))
        b = self.spec.block_tokens
        return self.meter.snapshot(
            self.t, streams, kv_pages_used=self._kv_pages_used(generated),
            kv_pages_total=self.spec.kv_capacity_tokens // b, page_size=b,
            max_running=self.spec.max_running, cached_block_hashes=(*self._gpu, *self._host))

    def routing_stats(self) -> dict[str, Any]:
        """The `record_routing_stats()` dict an engine replica would return now."""
        return routing_stats(self.stats())

    def autoscaling_stats(self) -> dict[str, float]:
        """The `record_autoscaling_stats()` dict an engine replica would return now."""
        return autoscaling_stats(self.stats(), startup_s=self.spec.cold_start_s,
                                 ready_at=self.ready_at)

    def abort_all(self) -> list[SimRequest]:
        """Drain deadline reached: end whatever still runs or waits."""
        self._changes += 1
        cut = [r for _, _, r in self._heap] + list(self.queue)
        for r in cut:
            r.cut = True
            r.finished_at = self.t
        self._heap.clear()
        self.queue.clear()
        self._prefilling = False
        self._prompt_sum = 0
        self._start_sum = 0.0
        self._start_mark.clear()
        self._pinned.clear()
        return cut
