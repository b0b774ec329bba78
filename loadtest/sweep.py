"""Sweeps over offered load, and the search for the highest rate that meets the SLOs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtest.load_run import RunResult
from loadtest.schedule import Schedule

#: Builds the schedule for one offered load (requests/s, or a concurrency).
ScheduleAt = Callable[[float], Schedule]
#: Runs one schedule; the label names the point on the progress bar.
Execute = Callable[[Schedule, str], RunResult]


@dataclass(frozen=True)
class SweepPoint:
    """One offered load and what it achieved."""

    load: float
    result: RunResult
    passed: bool | None = None


def sweep(loads: Sequence[float], schedule_at: ScheduleAt, execute: Execute) -> list[SweepPoint]:
    """Run each load in turn, lowest first."""
    return [SweepPoint(load, execute(schedule_at(load), f"load {load:g}"))
            for load in sorted(loads)]


@dataclass(frozen=True)
class RateSearch:
    """Bisection for the highest rate in [`low`, `high`] at which at least `attainment` of
    the requests meet every SLO. It stops after `iterations` runs of the bisection proper or
    when the bracket is narrower than `tolerance` (relative to its upper end)."""

    low: float
    high: float
    attainment: float = 0.9
    iterations: int = 6
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"--find-max-rate needs 0 < LOW < HIGH, got {self.low}:{self.high}")
        if not 0 < self.attainment <= 1:
            raise ValueError(f"--slo-attainment must be in (0, 1], got {self.attainment}")

    def passes(self, result: RunResult) -> bool:
        got = result.summary.slo_attainment
        return got is not None and got >= self.attainment

    def run(self, schedule_at: ScheduleAt, execute: Execute) -> tuple[float | None,
                                                                      list[SweepPoint]]:
        """The highest passing rate found (None if even `low` fails) and every point tried."""
        points: list[SweepPoint] = []

        def probe(rate: float) -> bool:
            result = execute(schedule_at(rate), f"rate {rate:.3g}")
            points.append(SweepPoint(rate, result, self.passes(result)))
            return points[-1].passed or False

        if probe(self.high):
            return self.high, points  # the bracket was too low: say so by returning its top
        if not probe(self.low):
            return None, points
        good, bad = self.low, self.high
        for _ in range(self.iterations):
            if (bad - good) / bad < self.tolerance:
                break
            mid = (good + bad) / 2
            if probe(mid):
                good = mid
            else:
                bad = mid
        return good, sorted(points, key=lambda p: p.load)
