"""`ReuseIntervals`: how long prompts' prefixes go unused before a prompt brings them back.

The router sees every prompt's block hashes. When a prompt repeats a prefix routed before, the
time since that prefix was last routed is one reuse interval, and it weighs the prefix's
tokens. Set against the lifetime of the fleet's prefix caches (capacity over the rate they take
in new tokens), the recent intervals say what a full cache loses by turning over sooner: where
most reused tokens come back within the lifetime, little; where most come back after it, the
few that still hit are those a cache with a longer life keeps (benchmarks/router_knobs.md).

Bounded: one block in every `span_tokens` of a prompt stands for the span (a page of 16 tokens
would otherwise cost a table entry per 16 tokens of history), the blocks seen last are kept
(least recently routed out first, leaves of a prefix before its root, so a remembered block's
predecessors are remembered too), and the latest intervals are kept as tokens per interval
bin (a quarter of a doubling wide), so a share costs a few bins' sum.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence

from serve.engine.block_hash import held_prefix

_BINS_PER_DOUBLING = 4
_BINS = 2 + 24 * _BINS_PER_DOUBLING  # under 1 s, then 1 s to 2**24 s, then longer


def _bin(seconds: float) -> int:
    if seconds < 1.0:
        return 0
    return min(_BINS - 1, 1 + int(_BINS_PER_DOUBLING * math.log2(seconds)))


class ReuseIntervals:
    def __init__(self, max_blocks: int = 500_000, max_samples: int = 2048,
                 min_samples: int = 64, span_tokens: int = 512) -> None:
        self._last: OrderedDict[int, float] = OrderedDict()  # block hash -> last routed at
        self._samples: deque[tuple[int, int]] = deque()  # (interval bin, tokens), oldest first
        self._tokens = [0] * _BINS  # tokens of the samples, by interval bin
        self._max_blocks = max_blocks
        self._max_samples = max_samples
        self._min_samples = min_samples
        self._span_tokens = span_tokens

    def observe(self, hashes: Sequence[int], page_size: int, now: float) -> None:
        """A prompt with these chain hashes of page-sized blocks was routed `now`."""
        stride = max(1, self._span_tokens // page_size)
        hashes = hashes[stride - 1::stride]  # the last block of each span
        seen = held_prefix(hashes, self._last.__contains__)
        if seen:
            sample = (_bin(now - self._last[hashes[seen - 1]]), seen * stride * page_size)
            self._samples.append(sample)
            self._tokens[sample[0]] += sample[1]
            if len(self._samples) > self._max_samples:
                old_bin, old_tokens = self._samples.popleft()
                self._tokens[old_bin] -= old_tokens
        last = self._last
        for h in reversed(hashes):  # the root ends most recent: leaves are forgotten first
            last[h] = now
            last.move_to_end(h)
        while len(last) > self._max_blocks:
            last.popitem(last=False)

    def share_within(self, lifetime_s: float) -> float | None:
        """The share of recently reused prefix tokens that came back within `lifetime_s`
        (intervals in the bin of `lifetime_s` count as later); None until `min_samples`
        reuses were seen."""
        if len(self._samples) < self._min_samples:
            return None
        total = sum(self._tokens)
        return sum(self._tokens[:_bin(lifetime_s)]) / total if total else None
