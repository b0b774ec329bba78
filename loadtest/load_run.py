"""One measured run: scrape the server, run the schedule, scrape again, summarise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from loadtest import prometheus
from loadtest.endpoint import Endpoint
from loadtest.record import RequestRecord
from loadtest.runner import Runner
from loadtest.schedule import Schedule
from loadtest.slo import Slo
from loadtest.summary import DEFAULT_PERCENTILES, Summary, summarize


@dataclass(frozen=True)
class RunResult:
    """A run's raw records, their summary and the server's metric deltas."""

    records: tuple[RequestRecord, ...]
    summary: Summary
    #: `prometheus.deltas(...)`, or {"unavailable": reason}.
    server: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "summary": self.summary.to_json(),
                "server": self.server, "requests": [r.to_json() for r in self.records]}


@dataclass(frozen=True)
class LoadRun:
    """How to run schedules against one endpoint: locally or on `workers` Ray actors."""

    endpoint: Endpoint
    slo: Slo = Slo()
    percentiles: Sequence[float] = DEFAULT_PERCENTILES
    workers: int = 1
    distributed: bool = False
    progress: bool = True
    scrape_metrics: bool = True

    def run(self, schedule: Schedule, label: str = "") -> RunResult:
        """Run `schedule` once and measure it."""
        started = datetime.now(UTC).isoformat()
        before, why = self._scrape()
        bar = tqdm(total=schedule.num_requests, file=sys.stderr, unit="req",
                   desc=label or "load", disable=not self.progress, dynamic_ncols=True)
        try:
            records = self._records(schedule, bar)
        finally:
            bar.close()
        after, why_after = self._scrape()
        if before is not None and after is not None:
            server = prometheus.deltas(before, after)
        else:
            server = {"unavailable": why or why_after or "metrics scraping is off"}
        summary = summarize(records, self.slo, self.percentiles, schedule.offered_load)
        return RunResult(tuple(sorted(records, key=lambda r: r.sent_s)), summary, server, started)

    def _records(self, schedule: Schedule, bar: tqdm) -> list[RequestRecord]:
        if self.distributed:
            from loadtest.distributed_runner import DistributedRunner  # Ray only when asked

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            return DistributedRunner(self.endpoint, self.workers).run(schedule, progress)
        runner = Runner(self.endpoint, on_record=lambda _: bar.update(1))
        return asyncio.run(runner.run(schedule))

    def _scrape(self) -> tuple[prometheus.MetricsSnapshot | None, str | None]:
        if not self.scrape_metrics:
            return None, None
        return asyncio.run(prometheus.scrape(self.endpoint.prometheus_url,
                                             self.endpoint.headers()))
