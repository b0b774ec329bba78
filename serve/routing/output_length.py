"""`OutputLengthEstimator`: an online estimate of how many tokens a request will generate.

R1 reasons before it answers, so outputs run from a few hundred to tens of thousands of tokens
with a heavy tail. A mean alone misleads under such a tail, so the estimator keeps a decayed
histogram over log-spaced lengths and answers "expected tokens still to come, capped at
max_tokens, given that g have been generated", which is what a replica's outstanding decode work
is made of.
"""

from __future__ import annotations

import math

_BINS_PER_OCTAVE = 4
_MAX_LOG2 = 17  # 131072 tokens: past any context R1 is served with
_NBINS = _MAX_LOG2 * _BINS_PER_OCTAVE + 1


def _bin(tokens: int) -> int:
    return min(_NBINS - 1, max(0, round(math.log2(max(tokens, 1)) * _BINS_PER_OCTAVE)))


_CENTERS = [2 ** (i / _BINS_PER_OCTAVE) for i in range(_NBINS)]


class OutputLengthEstimator:
    """Decayed histogram of finished requests' output lengths, seeded with a prior.

    `half_life` is in observations: recent traffic dominates, so a shift from chat to long
    reasoning shows within a few hundred requests.
    """

    def __init__(self, prior_tokens: int = 2048, prior_weight: float = 8.0,
                 half_life: float = 2000.0) -> None:
        self._weights = [0.0] * _NBINS
        self._decay = 0.5 ** (1.0 / half_life)
        # A log-normal prior (sigma 1, about an e-fold either side) around prior_tokens, so the
        # first estimates already carry a tail.
        mu = math.log2(max(prior_tokens, 1))
        sigma = 1.0 / math.log(2)
        raw = [math.exp(-0.5 * ((i / _BINS_PER_OCTAVE - mu) / sigma) ** 2) for i in range(_NBINS)]
        total = sum(raw)
        self._weights = [prior_weight * w / total for w in raw]
        self._cache: dict[int, float] = {}
        self.observations = 0

    def observe(self, output_tokens: int) -> None:
        """Learn from one finished request."""
        d = self._decay
        self._weights = [w * d for w in self._weights]
        self._weights[_bin(output_tokens)] += 1.0
        self._cache.clear()
        self.observations += 1

    def expected_total(self, max_tokens: int) -> float:
        """Expected output tokens of a new request capped at `max_tokens` (memoised: this is
        on the per-request path)."""
        v = self._cache.get(max_tokens)
        if v is None:
            v = self.expected_remaining(0, max_tokens)
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[max_tokens] = v
        return v

    def expected_remaining(self, generated: int, max_tokens: int) -> float:
        """E[min(L, max_tokens) - generated | L > generated]; at least 1 while under the cap."""
        if generated >= max_tokens:
            return 0.0
        num = den = 0.0
        for w, c in zip(self._weights, _CENTERS, strict=True):
            if c <= generated or w == 0.0:
                continue
            num += w * (min(c, max_tokens) - generated)
            den += w
        if den == 0.0:  # past every length seen: assume it runs on as far again, within the cap
            return float(max(1, min(max_tokens - generated, generated)))
        return max(1.0, num / den)
