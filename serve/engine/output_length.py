"""`OutputLengthEstimator`: an online distribution of how many tokens a request generates.

R1 reasons before it answers, so outputs run from a few hundred to tens of thousands of tokens
with a heavy tail. A mean alone misleads under such a tail, so the estimator keeps a decayed
histogram over log-spaced lengths L and answers E[min(L, max_tokens) - g | L > g]: the tokens
still to come of a stream that has generated g, which is what a replica's outstanding decode
work is made of. A stream that has run 8K tokens is likely to run longer than a fresh one.

One home for the estimate: engines report their streams' expected remaining decode tokens
from it (`LoadMeter`), and the router estimates a new request's output with it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

_BINS_PER_OCTAVE = 4
_MAX_LOG2 = 17  # 131072 tokens: past any context R1 is served with
_NBINS = _MAX_LOG2 * _BINS_PER_OCTAVE + 1
_CENTERS = [2 ** (i / _BINS_PER_OCTAVE) for i in range(_NBINS)]


def _bin(tokens: int) -> int:
    return min(_NBINS - 1, max(0, round(math.log2(max(tokens, 1)) * _BINS_PER_OCTAVE)))


@dataclass(frozen=True)
class LengthPrior:
    """A log-normal belief about output lengths, held before any request has finished."""

    median_tokens: float
    sigma: float  # of the natural log of the length
    weight: float = 8.0  # worth this many observed requests


# R1's reasoning: a median of 3,000 output tokens and a log-normal spread of 0.9 (about 1,200 to
# 7,400 tokens between the 16th and 84th percentiles), the shape the simulator's R1-like
# workloads draw from (`sim.workload.r1_output_tokens`).
R1_PRIOR = LengthPrior(median_tokens=3000.0, sigma=0.9)


class OutputLengthEstimator:
    """Decayed histogram of finished requests' output lengths, seeded with a prior.

    `half_life` is in observations: recent traffic dominates, so a shift from chat to long
    reasoning shows within a few hundred requests, and the prior is forgotten as fast.
    Queries cost a binary search: engines ask for every running stream at every report.
    """

    def __init__(self, prior: LengthPrior = R1_PRIOR, half_life: float = 2000.0) -> None:
        self._decay = 0.5 ** (1.0 / half_life)
        mu = math.log(max(prior.median_tokens, 1.0))
        raw = [math.exp(-0.5 * ((math.log(c) - mu) / prior.sigma) ** 2) for c in _CENTERS]
        total = sum(raw)
        self._weights = [prior.weight * w / total for w in raw]
        self._tails: tuple[list[float], list[float]] | None = None
        self._totals: dict[int, float] = {}
        self._squares: dict[int, float] = {}
        self.observations = 0

    def observe(self, output_tokens: int) -> None:
        """Learn from one finished request."""
        d = self._decay
        self._weights = [w * d for w in self._weights]
        self._weights[_bin(output_tokens)] += 1.0
        self._tails = None
        self._totals.clear()
        self._squares.clear()
        self.observations += 1

    def expected_total(self, max_tokens: int) -> float:
        """Expected output tokens of a new request capped at `max_tokens` (memoised: this is
        on the per-request path)."""
        v = self._totals.get(max_tokens)
        if v is None:
            v = self.expected_remaining(0, max_tokens)
            if len(self._totals) > 1024:
                self._totals.clear()
            self._totals[max_tokens] = v
        return v

    def expected_kv_steps(self, prompt_tokens: int, max_tokens: int) -> float:
        """KV token-steps a new request is expected to hold while it decodes: at its k-th
        step it holds prompt + k tokens, so over L steps p L + L (L + 1) / 2, in expectation
        (L capped at `max_tokens`). Times the seconds a step takes, the KV token-seconds that
        Little's law turns into the KV a steady arrival rate keeps in use."""
        square = self._squares.get(max_tokens)
        if square is None:
            num = den = 0.0
            for w, c in zip(self._weights, _CENTERS, strict=True):
                num += w * min(c, max_tokens) ** 2
                den += w
            square = num / den if den > 0 else 0.0
            if len(self._squares) > 1024:
                self._squares.clear()
            self._squares[max_tokens] = square
        mean = self.expected_total(max_tokens)
        return prompt_tokens * mean + (square + mean) / 2.0

    def expected_remaining(self, generated: int, max_tokens: int) -> float:
        """E[min(L, max_tokens) - generated | L > generated]; at least 1 while under the cap."""
        if generated >= max_tokens:
            return 0.0
        w_tail, wc_tail = self._tail_sums()
        lo = bisect.bisect_right(_CENTERS, generated)  # bins whose length exceeds `generated`
        hi = max(lo, bisect.bisect_right(_CENTERS, max_tokens))  # ... and exceeds the cap
        den = w_tail[lo]
        if den <= 0.0:  # past every length seen: assume it runs on as far again, within the cap
            return float(max(1, min(max_tokens - generated, generated)))
        below_cap = (wc_tail[lo] - wc_tail[hi]) - generated * (w_tail[lo] - w_tail[hi])
        num = below_cap + (max_tokens - generated) * w_tail[hi]
        return max(1.0, num / den)

    def _tail_sums(self) -> tuple[list[float], list[float]]:
        """Sums of weight and of weight x length over bins i and above, for every i."""
        if self._tails is None:
            w_tail = [0.0] * (_NBINS + 1)
            wc_tail = [0.0] * (_NBINS + 1)
            for i in range(_NBINS - 1, -1, -1):
                w_tail[i] = w_tail[i + 1] + self._weights[i]
                wc_tail[i] = wc_tail[i + 1] + self._weights[i] * _CENTERS[i]
            self._tails = (w_tail, wc_tail)
        return self._tails
