"""`LoadForecast`: the fleet's arrival rate in tokens, its trend and its burstiness.

A replica asked for now serves only after its cold start, so the policy sizes the fleet for the
load one cold start ahead. The forecast fits a line to the fleet's arrival rate (prompt plus
expected decode tokens per second, summed over replicas) over `trend_window_s` and reads it at
the horizon. Bursts are what the line does not explain: the spread of the samples around their
own trend over `burst_window_s`, as a share of the level. The policy keeps `z` spreads of it
as headroom, so a burst shorter than a cold start, which no scale-up can catch, still finds
room.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Forecast:
    level: float  # tokens/s now, on the fitted line
    ahead: float  # tokens/s one horizon ahead, on the line (never below zero)
    spread: float  # the samples' spread about their trend, as a share of the level

    def growth(self) -> float:
        """How much more (or less) load one horizon ahead than now."""
        return self.ahead / self.level if self.level > 0 else 1.0


class LoadForecast:
    """Samples of the fleet's arrival rate, at most one per `sample_s`."""

    def __init__(self, trend_window_s: float, burst_window_s: float,
                 sample_s: float = 10.0) -> None:
        self.trend_window_s, self.burst_window_s, self.sample_s = (
            trend_window_s, burst_window_s, sample_s)
        self._samples: deque[tuple[float, float]] = deque()
        self._spread = 0.0  # recomputed with each sample: Serve asks many times a second

    def add(self, now: float, tokens_per_s: float) -> None:
        if self._samples and now - self._samples[-1][0] < self.sample_s:
            return
        self._samples.append((now, tokens_per_s))
        keep = max(self.trend_window_s, self.burst_window_s)
        while self._samples and self._samples[0][0] < now - keep:
            self._samples.popleft()
        self._spread = self._spread_about_trend(now)

    def at(self, now: float, horizon_s: float) -> Forecast:
        recent = [(t, v) for t, v in self._samples if t >= now - self.trend_window_s]
        if not recent:
            return Forecast(0.0, 0.0, 0.0)
        slope, level = _line(recent, now)
        level = max(level, 0.0)
        return Forecast(level, max(0.0, level + slope * horizon_s),
                        self._spread / level if level > 0 else 0.0)

    def _spread_about_trend(self, now: float) -> float:
        """Root-mean-square distance of the samples over the burst window from the trend line
        of their own neighbourhood (one trend window centred on each): sliding sums, so one
        pass."""
        # times from `now`: wall-clock seconds squared would swamp the sums' precision
        pts = [(t - now, v) for t, v in self._samples if t >= now - self.burst_window_s]
        half = self.trend_window_s / 2
        sums = [0.0] * 5  # n, t, v, t^2, t*v of the points in the neighbourhood
        lo = hi = 0
        total, n = 0.0, 0
        for t, v in pts:
            while hi < len(pts) and pts[hi][0] <= t + half:
                _shift(sums, pts[hi], +1.0)
                hi += 1
            while pts[lo][0] < t - half:
                _shift(sums, pts[lo], -1.0)
                lo += 1
            k, st, sv, stt, stv = sums
            var = stt - st * st / k
            if k < 3 or var <= 1e-9:
                continue
            slope = (stv - st * sv / k) / var
            total += (v - (sv / k + slope * (t - st / k))) ** 2
            n += 1
        return math.sqrt(total / n) if n else 0.0


def _shift(sums: list[float], point: tuple[float, float], sign: float) -> None:
    t, v = point
    for i, x in enumerate((1.0, t, v, t * t, t * v)):
        sums[i] += sign * x


def _line(points: list[tuple[float, float]], at: float) -> tuple[float, float]:
    """Least-squares slope of `points` and the line's value at `at`."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return 0.0, mv
    slope = sum((t - mt) * (v - mv) for t, v in points) / var
    return slope, mv + slope * (at - mt)
