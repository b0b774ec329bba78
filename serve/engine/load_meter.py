"""`LoadMeter`: one replica's `EngineStats`, from its requests' states and what its steps did.

Every backend builds its stats here, and so does the simulator's replica model
(`sim.replica_model`): the router and the autoscaler see the same fields with the same meaning
whether a replica is live or modelled. An engine tells the meter what happens (a request
arrives, a step computes prefill and decode tokens, a first token leaves, a request finishes)
and, when asked for a report, lists its requests as `StreamState`s.

Decode work is reported twice, because two consumers need different things of it:
- `expected_remaining_decode_tokens`: E[min(L, max_tokens) - g | L > g] per stream, from the
  meter's output-length distribution learnt from finished requests. Capacity needs this.
- `decode_bound_tokens` (and the longest stream's): max_tokens - g, the most the streams could
  still take. Draining a replica without cutting a stream needs this.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass

from serve.engine.base import EngineStats
from serve.engine.output_length import OutputLengthEstimator
from serve.engine.percentile import percentile

RATE_WINDOW_S = 60.0  # arrivals and prefill speed: long enough to hold a few R1 prompts
THROUGHPUT_WINDOW_S = 10.0  # generation rate and inter-token latency: the recent past
TTFT_WINDOW_S = 60.0  # the TTFT percentiles the autoscaler sees cover this recent past
LEARNT_FINISHES = ("stop", "length")  # an abort or an error says nothing of the length
# First tokens slower than each of these are counted: summed over replicas, the counts give the
# fleet's share of requests over any TTFT objective (percentiles cannot be summed). They are
# counted twice: all of them, and those that only waiting made late (without the time the
# request queued before its prefill began, it would have been in time): the misses more
# capacity can cure.
TTFT_THRESHOLDS_S = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True)
class StreamState:
    """One request as the stats count it."""

    prompt_tokens: int
    prefill_left: int  # prompt (or resumed) tokens not yet computed
    generated: int
    max_tokens: int
    running: bool  # admitted to the running batch (else waiting)


class _Buckets:
    """Sums of a few quantities over a sliding window of one-second buckets. Work done over
    an interval is spread evenly over the time it covers, and a bucket the window's start cuts
    counts for the part of its second inside the window, so a steady rate reads as itself."""

    def __init__(self, window_s: float, fields: int) -> None:
        self.window_s, self.fields = window_s, fields
        self._buckets: collections.OrderedDict[int, list[float]] = collections.OrderedDict()

    def add(self, start: float, end: float, values: tuple[float, ...]) -> None:
        span = end - start
        if span <= 0:
            self._put(math.floor(end), values, 1.0)
            return
        # The part of the interval before the window's oldest bucket would never be read; its
        # share of the values is dropped with it, not crowded into the part that is kept.
        t = max(start, math.floor(end - self.window_s))
        while t < end:
            second = math.floor(t)
            nxt = min(end, second + 1.0)
            self._put(second, values, (nxt - t) / span)
            t = nxt

    def _put(self, second: int, values: tuple[float, ...], share: float) -> None:
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0.0] * self.fields
            if len(self._buckets) > 1 and next(reversed(self._buckets)) != second:
                self._buckets = collections.OrderedDict(sorted(self._buckets.items()))
        for i, v in enumerate(values):
            bucket[i] += v * share

    def sums(self, now: float) -> list[float]:
        """Totals over the `window_s` seconds up to `now`."""
        since = now - self.window_s
        oldest = math.floor(since)
        while self._buckets and next(iter(self._buckets)) < oldest:
            self._buckets.popitem(last=False)
        totals = [0.0] * self.fields
        for second, bucket in self._buckets.items():
            inside = 1.0 if second > oldest else oldest + 1.0 - since
            for i, v in enumerate(bucket):
                totals[i] += v * inside
        return totals


class LoadMeter:
    """What one engine replica has done recently, and its report."""

    def __init__(self, lengths: OutputLengthEstimator | None = None, *, now: float = 0.0) -> None:
        self.lengths = lengths or OutputLengthEstimator()
        self.created_at = now
        # requests, prompt tokens, expected decode tokens, expected KV token-steps
        self._arrivals = _Buckets(RATE_WINDOW_S, 4)
        self._prefill = _Buckets(RATE_WINDOW_S, 2)  # prefill tokens, seconds spent on them
        self._decode = _Buckets(THROUGHPUT_WINDOW_S, 2)  # decode tokens, tokens x step time
        # (when, TTFT, TTFT less the queueing before prefill began)
        self._ttfts: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=2048)
        self.prompt_tokens = 0  # cumulative, over requests whose prefill started
        self.cached_tokens = 0  # of those, served from the prefix cache

    # -- what happened ------------------------------------------------------------------------

    def arrived(self, now: float, prompt_tokens: int, max_tokens: int) -> None:
        self._arrivals.add(now, now, (1.0, float(prompt_tokens),
                                      self.lengths.expected_total(max_tokens),
                                      self.lengths.expected_kv_steps(prompt_tokens, max_tokens)))

    def prefix_matched(self, prompt_tokens: int, cached_tokens: int) -> None:
        """A request's prefill began: `cached_tokens` of its prompt came from the cache."""
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens

    def worked(self, now: float, busy_s: float, step_s: float, prefill_tokens: float,
               decode_tokens: float) -> None:
        """Over the `busy_s` seconds up to `now`, steps of `step_s` each computed these
        tokens (a step decodes one token for each running stream)."""
        start = now - busy_s
        if prefill_tokens > 0:
            self._prefill.add(start, now, (prefill_tokens, busy_s))
        if decode_tokens > 0:
            self._decode.add(start, now, (decode_tokens, decode_tokens * step_s))

    def first_token(self, now: float, ttft_s: float, waited_s: float | None = None) -> None:
        """A request's first token left; it had queued `waited_s` of that before its prefill
        began (None: not known, so all of the TTFT counts as waiting)."""
        self._ttfts.append((now, ttft_s, 0.0 if waited_s is None else ttft_s - waited_s))

    def finished(self, output_tokens: int, reason: str) -> None:
        """A request ended; a natural end (or the max_tokens cap) teaches the distribution."""
        if reason in LEARNT_FINISHES and output_tokens > 0:
            self.lengths.observe(output_tokens)

    # -- the report ---------------------------------------------------------------------------

    def snapshot(self, now: float, streams: Iterable[StreamState], *, kv_pages_used: int,
                 kv_pages_total: int, page_size: int, max_running: int,
                 cached_block_hashes: tuple[int, ...] = ()) -> EngineStats:
        running = waiting = queued = bound = longest = 0
        expected = 0.0
        for s in streams:
            if s.running:
                running += 1
                queued += s.prefill_left if s.prefill_left > 1 else 0  # 1: the next decode
            else:
                waiting += 1
                queued += s.prefill_left
            left = max(0, s.max_tokens - s.generated)
            bound += left
            longest = max(longest, left)
            expected += (self.lengths.expected_total(s.max_tokens) if s.generated == 0  # memo
                         else self.lengths.expected_remaining(s.generated, s.max_tokens))
        up = max(1.0, min(RATE_WINDOW_S, now - self.created_at))
        arrived, arrived_prompt, arrived_decode, arrived_kv = self._arrivals.sums(now)
        prefilled, prefill_s = self._prefill.sums(now)
        decoded, decode_time = self._decode.sums(now)
        recent = self._recent_ttfts(now)
        ttfts = sorted(ttft for ttft, _ in recent)
        ttft90, ttft99 = percentile(ttfts, 0.9), percentile(ttfts, 0.99)
        ttft_up = max(1.0, min(TTFT_WINDOW_S, now - self.created_at))
        over = tuple((len(ttfts) - bisect.bisect_right(ttfts, t)) / ttft_up
                     for t in TTFT_THRESHOLDS_S)
        over_waiting = tuple(sum(1 for ttft, unqueued in recent if unqueued <= t < ttft)
                             / ttft_up for t in TTFT_THRESHOLDS_S)
        return EngineStats(
            running=running, waiting=waiting, kv_pages_used=kv_pages_used,
            kv_pages_total=kv_pages_total, page_size=page_size, queued_prefill_tokens=queued,
            expected_remaining_decode_tokens=round(expected),
            prefix_cache_hit_tokens=self.cached_tokens, prompt_tokens=self.prompt_tokens,
            generation_tokens_per_s=decoded / min(THROUGHPUT_WINDOW_S, up),
            cached_block_hashes=cached_block_hashes, ttft_p90_s=ttft90, ttft_p99_s=ttft99,
            first_tokens_per_s=len(ttfts) / ttft_up, ttft_over_per_s=over,
            ttft_over_waiting_per_s=over_waiting,
            decode_bound_tokens=bound, longest_decode_bound_tokens=longest,
            max_running=max_running,
            itl_mean_s=decode_time / decoded if decoded > 0 else None,
            prefill_tokens_per_s=prefilled / up,
            prefill_capacity_tokens_per_s=prefilled / prefill_s if prefill_s > 0 else None,
            arrival_requests_per_s=arrived / up,
            arrival_prompt_tokens_per_s=arrived_prompt / up,
            arrival_decode_tokens_per_s=arrived_decode / up,
            arrival_kv_token_steps_per_s=arrived_kv / up,
        )

    def _recent_ttfts(self, now: float) -> list[tuple[float, float]]:
        """(TTFT, TTFT less queueing) of the window's first tokens."""
        while self._ttfts and now - self._ttfts[0][0] > TTFT_WINDOW_S:
            self._ttfts.popleft()
        return [(ttft, unqueued) for _, ttft, unqueued in self._ttfts]
