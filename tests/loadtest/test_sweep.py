"""The search for the highest rate meeting the SLOs."""

from __future__ import annotations

from loadtest.load_run import RunResult
from loadtest.schedule import Schedule
from loadtest.summary import summarize
from loadtest.sweep import RateSearch


def fake_execute(capacity: float):
    """A server that meets its SLOs exactly up to `capacity` requests/s."""
    def execute(schedule: Schedule, label: str) -> RunResult:
        summary = summarize([])
        attainment = 1.0 if (schedule.offered_load or 0) <= capacity else 0.5
        object.__setattr__(summary, "slo_attainment", attainment)
        return RunResult((), summary)
    return execute


def at(rate: float) -> Schedule:
    return Schedule(sessions=(), offered_load=rate)


def test_bisection_brackets_the_capacity() -> None:
    found, points = RateSearch(1.0, 16.0, iterations=10, tolerance=0.01).run(at, fake_execute(5))
    assert found is not None and 5 * 0.98 <= found <= 5
    assert all(p.passed == (p.load <= 5) for p in points)


def test_bisection_reports_brackets_that_miss() -> None:
    assert RateSearch(1.0, 4.0).run(at, fake_execute(100))[0] == 4.0
    assert RateSearch(1.0, 4.0).run(at, fake_execute(0.5))[0] is None
