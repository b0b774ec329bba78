"""Arrival processes: they turn a workload's sessions into a `Schedule`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from loadtest.request_spec import Session
from loadtest.schedule import Schedule


class Arrival(Protocol):
    """Assigns due times (open loop) or slots (closed loop) to sessions."""

    def schedule(self, sessions: list[Session]) -> Schedule:
        ...


@dataclass(frozen=True)
class RateArrival:
    """Open loop at `rate` sessions/s with gamma-distributed gaps.

    `burstiness` is the gamma shape: 1 is a Poisson process, below 1 burstier, above 1 more
    regular; the mean gap is 1/rate either way. During `ramp_up_s` the rate rises linearly from
    0 to `rate` (a time change of the same process, so the gap distribution keeps its shape).
    Sessions due after `duration_s` are dropped.
    """

    rate: float
    burstiness: float = 1.0
    ramp_up_s: float = 0.0
    duration_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or not math.isfinite(self.rate):
            raise ValueError(f"--rate must be a positive number, got {self.rate}")
        if self.burstiness <= 0:
            raise ValueError(f"--burstiness must be positive, got {self.burstiness}")

    def schedule(self, sessions: list[Session]) -> Schedule:
        rng = np.random.default_rng(self.seed)
        gaps = rng.gamma(self.burstiness, 1.0 / (self.rate * self.burstiness), len(sessions))
        # The first session starts the run: the schedule begins with an arrival, not a gap.
        full_rate_times = np.concatenate([[0.0], np.cumsum(gaps[1:])])
        due = [_ramped(t, self.ramp_up_s) for t in full_rate_times]
        timed = [replace(s, arrival_s=float(t)) for s, t in zip(sessions, due, strict=True)
                 if self.duration_s is None or t <= self.duration_s]
        return Schedule(sessions=tuple(timed), duration_s=self.duration_s,
                        offered_load=self.rate)


@dataclass(frozen=True)
class TraceArrival:
    """Open loop at the trace's own times multiplied by `time_scale` (0.5 replays twice as
    fast). Sessions due after `duration_s` are dropped."""

    time_scale: float = 1.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"--time-scale must be positive, got {self.time_scale}")

    def schedule(self, sessions: list[Session]) -> Schedule:
        timed = [replace(s, arrival_s=s.arrival_s * self.time_scale) for s in sessions]
        kept = tuple(s for s in timed if self.duration_s is None or s.arrival_s <= self.duration_s)
        span = kept[-1].arrival_s if kept else 0.0
        rate = len(kept) / span if span > 0 else None
        return Schedule(sessions=kept, duration_s=self.duration_s, offered_load=rate)


@dataclass(frozen=True)
class ConcurrencyArrival:
    """Closed loop: `concurrency` sessions in flight at once; during `ramp_up_s` the slots
    open one by one at even intervals."""

    concurrency: int
    ramp_up_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, got {self.concurrency}")

    def schedule(self, sessions: list[Session]) -> Schedule:
        opens = tuple(self.ramp_up_s * i / self.concurrency for i in range(self.concurrency))
        return Schedule(sessions=tuple(sessions), concurrency=self.concurrency, slot_open_s=opens,
                        duration_s=self.duration_s, offered_load=float(self.concurrency))


def _ramped(t: float, ramp_s: float) -> float:
    """Real time at which a process running at full rate would have reached `t`, when the rate
    rises linearly from 0 over `ramp_s`: solves t = integral of rate(u)/rate du."""
    if ramp_s <= 0:
        return t
    if t < ramp_s / 2:
        return math.sqrt(2.0 * ramp_s * t)
    return t + ramp_s / 2
