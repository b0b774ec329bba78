"""`LoadForecast`: the fleet's arrival rate in tokens, its trend, and how far off the trend
has been one horizon on.

A replica asked for now serves only after its cold start, so the policy sizes the fleet for the
load one horizon ahead. The load is tokens arriving per second (prompt plus expected decode,
summed over replicas): the arrival rate of requests times their mean tokens. The two move on
different clocks and the second is noisy (a minute of R1 traffic may hold one 100K-token prompt
or none), so the forecast fits a line to the request rate over `trend_window_s`, reads it at
the horizon, and multiplies by the mean tokens per request over `burst_window_s` (and, the
same way, gives the KV token-steps the arrivals will hold). Every
forecast is kept until its time comes and then compared with the line's level then: the spread
of the load above its forecasts (the root mean square of those errors, counting forecasts the
load fell short of as 0) over `burst_window_s`, as a share of the level, is the load's
burstiness as the policy meets it. Smooth traffic that the trend follows earns little
headroom; bursts the trend cannot see coming earn more, for as long as they keep coming.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Arrivals:
    """The fleet's arrivals per second: requests, and their prompt plus expected decode tokens
    and expected KV token-steps (see `OutputLengthEstimator.expected_kv_steps`)."""

    requests: float = 0.0
    tokens: float = 0.0
    kv_token_steps: float = 0.0


@dataclass(frozen=True)
class Forecast:
    level: float = 0.0  # tokens/s now, on the fitted line
    ahead: float = 0.0  # tokens/s one horizon ahead, on the line (never below zero)
    spread: float = 0.0  # load above past forecasts, root mean square, as a share of the level
    kv_token_steps: float = 0.0  # KV token-steps/s of the arrivals now, on the line

    def growth(self) -> float:
        """How much more (or less) load one horizon ahead than now."""
        return self.ahead / self.level if self.level > 0 else 1.0


class LoadForecast:
    """Samples of the fleet's arrivals, at most one per `sample_s`."""

    def __init__(self, trend_window_s: float, burst_window_s: float,
                 sample_s: float = 10.0) -> None:
        self.trend_window_s, self.burst_window_s, self.sample_s = (
            trend_window_s, burst_window_s, sample_s)
        self._samples: deque[tuple[float, float]] = deque()  # (when, requests/s)
        self._sizes: deque[tuple[float, Arrivals]] = deque()  # over the burst window
        self._due: deque[tuple[float, float]] = deque()  # (when, forecast load) not yet due
        self._errors: deque[tuple[float, float]] = deque()  # (when, relative error)
        self.latest = Forecast()

    def update(self, now: float, arrivals: Arrivals, horizon_s: float) -> Forecast:
        """Take a sample (unless one was taken less than `sample_s` ago) and forecast."""
        if self._samples and now - self._samples[-1][0] < self.sample_s:
            return self.latest
        self._samples.append((now, arrivals.requests))
        while self._samples and self._samples[0][0] < now - self.trend_window_s:
            self._samples.popleft()
        self._sizes.append((now, arrivals))
        while self._sizes and self._sizes[0][0] < now - self.burst_window_s:
            self._sizes.popleft()
        requests = sum(a.requests for _, a in self._sizes)
        tokens, kv = ((sum(getattr(a, f) for _, a in self._sizes) / requests if requests > 0
                       else 0.0) for f in ("tokens", "kv_token_steps"))
        slope, level = _line(self._samples, now)
        level = max(level, 0.0)
        if now - self._samples[0][0] < self.trend_window_s / 2:
            slope = 0.0  # too short a span for a trend: assume none, and judge no forecast
            self._due.clear()
        while self._due and self._due[0][0] <= now:
            _, forecast = self._due.popleft()
            if level > 0:
                self._errors.append((now, (level - forecast) / level))
        while self._errors and self._errors[0][0] < now - self.burst_window_s:
            self._errors.popleft()
        ahead = max(0.0, level + slope * horizon_s)
        if now - self._samples[0][0] >= self.trend_window_s / 2:
            self._due.append((now + horizon_s, ahead))
        # Only the load that came above its forecast: headroom is for that; a forecast above
        # the load costs replica-hours, and the trend corrects it by itself.
        spread = (math.sqrt(sum(max(e, 0.0) ** 2 for _, e in self._errors) / len(self._errors))
                  if self._errors else 0.0)
        self.latest = Forecast(level * tokens, ahead * tokens, spread, level * kv)
        return self.latest


def _line(points: deque[tuple[float, float]], at: float) -> tuple[float, float]:
    """Least-squares slope of `points` and the line's value at `at` (times taken from `at`:
    wall-clock seconds squared would swamp the sums' precision)."""
    n = len(points)
    mt = sum(t - at for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - at - mt) ** 2 for t, _ in points)
    if var <= 0:
        return 0.0, mv
    slope = sum((t - at - mt) * (v - mv) for t, v in points) / var
    return slope, mv - slope * mt
