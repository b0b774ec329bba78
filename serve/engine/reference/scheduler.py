"""`Scheduler`: continuous batching with chunked prefill over paged KV and a prefix cache.

Every step: running sequences first (oldest first: one token for each decode, the next chunk
for each unfinished prefill), then waiting sequences in arrival order, all within one token
budget. The `KVCacheManager` owns the pages: when they run out it gives back unreferenced
cached ones; when that is not enough the newest running sequence is preempted: its computed
pages go to the prefix cache and it returns to the front of the queue, to resume from where the
cache still holds it.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from serve.engine.load_meter import LoadMeter
from serve.engine.reference.engine_config import EngineConfig
from serve.engine.reference.kv_cache_manager import KVCacheManager
from serve.engine.reference.sequence import Sequence, Status


@dataclass(frozen=True)
class ScheduledItem:
    seq: Sequence
    start: int  # tokens already computed
    num_tokens: int  # tokens computed this step

    @property
    def samples(self) -> bool:
        """This step reaches the end of the sequence's tokens, so its logits pick the next."""
        return self.start + self.num_tokens == len(self.seq.token_ids)


class Scheduler:
    """One data-parallel rank's batching. `meter` hears each request's prefix-cache hit when
    its prefill first begins; the engine shares one meter between its ranks' schedulers, so
    the hits it reports are the instance's."""

    def __init__(self, config: EngineConfig, meter: LoadMeter | None = None) -> None:
        self.config = config
        self.meter = meter or LoadMeter()
        self.kv_cache = KVCacheManager(config.page_size, config.kv_pages, config.prefix_cache)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in arrival order, so the newest is preempted first
        self.preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[ScheduledItem]:
        budget = self.config.max_batched_tokens
        items: dict[Sequence, ScheduledItem] = {}
        # Decodes first so a long prefill never stalls the streams already running.
        for seq in sorted(self.running, key=lambda s: s.remaining_prefill > 1):
            if seq.status is not Status.RUNNING or budget == 0:
                continue
            n = min(seq.remaining_prefill, budget)
            if self._reserve_running(seq, n, items):
                items[seq] = ScheduledItem(seq, seq.num_computed, n)
            budget = self.config.max_batched_tokens - sum(i.num_tokens for i in items.values())
        while self.waiting and budget > 0 and len(self.running) < self.config.max_running:
            seq = self.waiting[0]
            self.kv_cache.match_and_lock(seq)
            n = min(seq.remaining_prefill, budget)
            if not self.kv_cache.reserve(seq, seq.num_computed + n):
                self.kv_cache.release(seq)
                break
            self.waiting.popleft()
            self._admit(seq)
            items[seq] = ScheduledItem(seq, seq.num_computed, n)
            budget -= n
        return list(items.values())

    def complete(self, item: ScheduledItem) -> None:
        """Record that the step computed the item's tokens."""
        seq = item.seq
        seq.num_computed = item.start + item.num_tokens
        if item.num_tokens > 1:  # a prefill chunk: share its pages with later requests now
            self.kv_cache.insert(seq)

    def finish(self, seq: Sequence) -> None:
        """The sequence is done (finished or aborted): cache its pages, free the rest."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
            self.kv_cache.insert(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.kv_cache.release(seq)
        seq.status = Status.FINISHED

    # -- batching ----------------------------------------------------------------------------

    def _reserve_running(self, seq: Sequence, n: int,
                         items: dict[Sequence, ScheduledItem]) -> bool:
        """Reserve pages for a running sequence, preempting the newest ones if needed (even
        ones already picked for this step, which then drop out of it)."""
        while not self.kv_cache.reserve(seq, seq.num_computed + n):
            victim = self.running[-1]
            items.pop(victim, None)
            self._preempt(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.kv_cache.insert(seq)
        self.kv_cache.release(seq)
        seq.status = Status.WAITING
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def _admit(self, seq: Sequence) -> None:
        seq.status = Status.RUNNING
        bisect.insort(self.running, seq, key=lambda s: s.arrival)
        if seq.cached_prompt_tokens is None:  # count the hit once, not again after preemption
            seq.cached_prompt_tokens = min(seq.num_computed, seq.prompt_len)
            self.meter.prefix_matched(seq.prompt_len, seq.cached_prompt_tokens)

    # -- load --------------------------------------------------------------------------------

    def queued_prefill_tokens(self) -> int:
        return sum(s.remaining_prefill for s in self.waiting) + sum(
            s.remaining_prefill for s in self.running if s.remaining_prefill > 1)
