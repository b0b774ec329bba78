"""`CapacityModel`: what one replica can carry within the SLOs, learnt from replicas' reports.

Nothing here is a constant of the hardware: the KV pool and the stream limit are reported, the
prefill speed is measured by each engine (prompt tokens per second spent prefilling), and the
decode limit comes from the inter-token latency objective. A decode step's time grows about
linearly with the streams in the batch (each adds its attention over its KV), so the model fits
ITL = a + c x streams to the (running, mean ITL) pairs replicas report, forgetting old ones,
and reads off the streams at which ITL reaches `itl_utilization` of the objective. Until the
pairs spread enough to fit a line, it assumes ITL grows in proportion to the streams (a = 0),
which errs towards more replicas, and claims no decode throughput until it has the line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capacity:
    """Per replica."""

    kv_tokens: float
    max_running: float  # 0: not reported
    prefill_tokens_per_s: float | None  # None until some replica has prefilled
    streams: float  # streams decoded at once within the ITL objective (inf: no limit known)
    decode_tokens_per_s: float | None  # tokens/s decoding that many streams (None: unknown)


@dataclass(frozen=True)
class ReplicaSample:
    """One replica's report, as the capacity model reads it."""

    kv_tokens: float
    max_running: float
    running: float
    itl_s: float | None
    prefill_tokens_per_s: float | None


class CapacityModel:
    """Learns from one set of replica reports per call of `learn` (the policy calls it once per
    forecast sample, not at every Serve tick, so a report is not counted many times)."""

    def __init__(self, itl_objective_s: float, itl_utilization: float,
                 memory: float = 0.98) -> None:
        self.itl_target_s = itl_objective_s * itl_utilization
        self.memory = memory  # the weight a sample keeps per later sample (half-life ~35)
        self._fit = [0.0] * 5  # decayed sums of 1, b, itl, b^2, b*itl
        self._prefill: float | None = None
        self._kv = 0.0
        self._max_running = 0.0
        self._per_stream: float | None = None  # mean ITL / streams, for ITL prop. to streams

    def learn(self, samples: list[ReplicaSample]) -> None:
        if not samples:
            return
        self._kv = sum(s.kv_tokens for s in samples) / len(samples)
        self._max_running = max(s.max_running for s in samples)
        self._fit = [x * self.memory for x in self._fit]
        ratios = []
        for s in samples:
            if s.itl_s is None or s.itl_s <= 0 or s.running < 1:
                continue
            b, y = s.running, s.itl_s
            for i, x in enumerate((1.0, b, y, b * b, b * y)):
                self._fit[i] += x
            ratios.append(y / b)
        if ratios:
            self._per_stream = sum(ratios) / len(ratios)
        speeds = [s.prefill_tokens_per_s for s in samples if s.prefill_tokens_per_s]
        if speeds:
            mean = sum(speeds) / len(speeds)
            self._prefill = mean if self._prefill is None else (
                self.memory * self._prefill + (1.0 - self.memory) * mean)

    def capacity(self) -> Capacity:
        streams, itl = self._decode_limit()
        return Capacity(self._kv, self._max_running, self._prefill, streams,
                        streams / itl if itl and streams != float("inf") else None)

    def _decode_limit(self) -> tuple[float, float | None]:
        """Streams per replica within the objective, and the ITL at that many."""
        cap = self._max_running if self._max_running > 0 else float("inf")
        n, sb, sy, sbb, sby = self._fit
        var = sbb - sb * sb / n if n > 0 else 0.0
        # A line needs streams that differ by a few across the samples, not noise about one.
        if n >= 3 and var / n >= 4.0:
            slope = (sby - sb * sy / n) / var
            intercept = (sy - slope * sb) / n
            if slope <= 0:  # more streams cost no latency in what was seen
                return cap, (sy / n if cap != float("inf") else None)
            if intercept >= self.itl_target_s:  # even one stream misses the objective
                return 1.0, intercept + slope
            streams = min(cap, (self.itl_target_s - intercept) / slope)
            return streams, intercept + slope * streams
        if self._per_stream is None:
            return cap, None
        # No line yet: the stream limit if ITL grew in proportion (an underestimate), but no
        # throughput from it, which would be today's throughput and hold the fleet where it is.
        return min(cap, self.itl_target_s / self._per_stream), None
