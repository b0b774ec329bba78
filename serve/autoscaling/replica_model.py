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
  first block on, as a radix cache does. A prompt's blocks are refreshed deepest first, so a
  prefix is most recent at its root and eviction takes leaves first, again as a radix cache
  does: what is left of a prompt is always a usable prefix. GPU capacity is the KV budget;
  blocks it evicts may drop to a host-memory tier, from which a hit costs `host_load_cost` of
  computing the token.
- All running requests decode at the same rate, so one shared counter of "tokens decoded per
  stream" and a heap of finish marks track them in O(log n) per event.

Not modelled: preemption when decode outgrows the KV cache (admission is by prompt size), the
KV held by running requests shrinking the prefix cache, and speculative decoding.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any


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
    session: str | None = None
    replica: int = -1
    cached_tokens: int = 0
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
        self._gpu: OrderedDict[int, None] = OrderedDict()
        self._host: OrderedDict[int, None] = OrderedDict()
        self._gpu_blocks = spec.kv_capacity_tokens // spec.block_tokens
        self._host_blocks = spec.host_cache_tokens // spec.block_tokens
        self.busy_s = 0.0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self._ttfts: deque[tuple[float, float]] = deque()
        self._mean_out = 2048.0  # the engine's own running estimate of output length
        self._expected_sum = 0.0  # sum over running of min(max_tokens, expected output)

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._heap)

    @property
    def ongoing(self) -> int:
        return len(self._heap) + len(self.queue)

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

    def advance(self, now: float, finished: list[SimRequest]) -> None:
        """Move to `now`, completing everything that ends on the way (appended to
        `finished`). Call with `now` no later than `next_event()` unless the replica is idle."""
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
        if self._heap:
            self._decoded += dt / step
        if self._prefilling:
            self._head_work -= dt * self.spec.prefill_chunk_tokens / step
        if self._heap or self._prefilling:
            self.busy_s += dt
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
            self._ttfts.append((self.t, self.t - req.arrival))
            self._cache_insert(req.blocks)
            mark = self._decoded + max(0, req.output_tokens - 1)
            self._start_mark[req.rid] = self._decoded
            self._start_sum += self._decoded
            self._expected_sum += min(req.max_tokens, self._mean_out)
            heapq.heappush(self._heap, (mark, req.rid, req))
            if req.output_tokens <= 1:
                self._settle(finished)
        self._maybe_start_prefill()

    def _retire(self, req: SimRequest) -> None:
        self._start_sum -= self._start_mark.pop(req.rid)
        self._prompt_sum -= req.prompt_tokens
        self._expected_sum -= min(req.max_tokens, self._mean_out)
        self._mean_out += (req.output_tokens - self._mean_out) / 64.0
        self._expected_sum = max(0.0, self._expected_sum)

    def _maybe_start_prefill(self) -> None:
        if self._prefilling or not self.queue:
            return
        req = self.queue[0]
        if self._heap and (self.running >= self.spec.max_running
                           or self.kv_used() + req.prompt_tokens > self.spec.kv_capacity_tokens):
            return  # wait for a stream to end
        gpu_hit, host_hit = self._cache_match(req.blocks, req.prompt_tokens)
        req.cached_tokens = gpu_hit + host_hit
        self.prompt_tokens += req.prompt_tokens
        self.cached_tokens += req.cached_tokens
        uncached = req.prompt_tokens - req.cached_tokens
        self._head_work = max(1.0, uncached + self.spec.host_load_cost * host_hit)
        self._prefilling = True
        self._prompt_sum += req.prompt_tokens

    def submit(self, req: SimRequest, finished: list[SimRequest]) -> None:
        """A request arrives now (call `advance(now)` first)."""
        req.replica = self.idx
        self.queue.append(req)
        self._maybe_start_prefill()

    # -- prefix cache -----------------------------------------------------------------------

    def held_tokens(self, blocks: tuple[int, ...], prompt_tokens: int) -> int:
        """Prompt tokens the cache holds now, GPU and host tiers together: what a prefill
        starting now would find. The LRU order is left as it is."""
        return min(self._held_blocks(blocks)[1] * self.spec.block_tokens, prompt_tokens)

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
        i, j = self._held_blocks(blocks)
        for h in reversed(blocks[:i]):  # the root ends most recent: leaves are evicted first
            self._gpu.move_to_end(h)
        gpu = min(i * b, prompt_tokens)
        return gpu, min(j * b, prompt_tokens) - gpu

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

    def expected_remaining_decode(self) -> float:
        generated = self.running * self._decoded - self._start_sum
        return max(float(self.running), self._expected_sum - generated)

    def routing_stats(self) -> dict[str, Any]:
        """The `record_routing_stats()` dict an engine replica would return now."""
        b = self.spec.block_tokens
        queued = sum(r.prompt_tokens for r in self.queue)
        if self._prefilling:
            queued += int(self._head_work) - self.queue[0].prompt_tokens
        return {
            "running": self.running, "waiting": len(self.queue),
            "kv_pages_used": int(self.kv_used()) // b,
            "kv_pages_total": self.spec.kv_capacity_tokens // b, "page_size": b,
            "queued_prefill_tokens": queued,
            "expected_remaining_decode_tokens": int(self.expected_remaining_decode()),
            "prefix_cache_hit_tokens": self.cached_tokens, "prompt_tokens": self.prompt_tokens,
            "generation_tokens_per_s": self.running / self._step_s(),
            "cached_block_hashes": (*self._gpu, *self._host),
        }

    def autoscaling_stats(self, window_s: float = 60.0) -> dict[str, float]:
        """The `record_autoscaling_stats()` dict, with TTFT p90 over the last `window_s`."""
        while self._ttfts and self._ttfts[0][0] < self.t - window_s:
            self._ttfts.popleft()
        ttfts = sorted(x for _, x in self._ttfts)
        stats = {
            "running": float(self.running), "waiting": float(len(self.queue)),
            "kv_utilization": self.kv_used() / self.spec.kv_capacity_tokens,
            "queued_prefill_tokens": float(sum(r.prompt_tokens for r in self.queue)),
            "expected_remaining_decode_tokens": self.expected_remaining_decode(),
            "generation_tokens_per_s": self.running / self._step_s(),
        }
        if ttfts:
            stats["ttft_p90_s"] = ttfts[int(0.9 * (len(ttfts) - 1))]
        return stats

    def abort_all(self) -> list[SimRequest]:
        """Drain deadline reached: end whatever still runs or waits."""
        cut = [r for _, _, r in self._heap] + list(self.queue)
        for r in cut:
            r.cut = True
            r.finished_at = self.t
        self._heap.clear()
        self.queue.clear()
        self._prefilling = False
        self._prompt_sum = 0
        self._start_sum = 0.0
        self._expected_sum = 0.0
        return cut
