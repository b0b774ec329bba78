"""Distributed generation: Ray actors share one schedule and one start time."""

from __future__ import annotations

import time
from collections.abc import Callable

import ray

from loadtest.endpoint import Endpoint
from loadtest.record import RequestRecord
from loadtest.runner import Runner
from loadtest.schedule import Schedule

#: Seconds between broadcasting the start time and the start itself, so every worker has
#: received its share and is waiting when the clock reaches it.
DEFAULT_LEAD_S = 2.0


@ray.remote(num_cpus=1)
class GeneratorWorker:
    """Runs its share of the schedule from its own event loop on its own CPU."""

    def __init__(self, index: int) -> None:
        self._index = index
        self._done = 0

    async def ready(self) -> int:
        return self._index

    async def progress(self) -> int:
        return self._done

    async def run(self, schedule: Schedule, endpoint: Endpoint,
                  start_epoch: float) -> list[RequestRecord]:
        # The common start is a wall-clock time; each host maps it onto its own monotonic
        # clock once, so the hosts' clocks need to agree only as well as NTP keeps them.
        origin = time.perf_counter() + (start_epoch - time.time())

        def count(_: RequestRecord) -> None:
            self._done += 1

        return await Runner(endpoint, self._index, on_record=count).run(schedule, origin)


class DistributedRunner:
    """Splits one schedule across `workers` actors (spread over the cluster's nodes), starts
    them at one common time and merges their records.

    Ray must already be initialised (`ray.init(address=...)`).
    """

    def __init__(self, endpoint: Endpoint, workers: int, lead_s: float = DEFAULT_LEAD_S) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self._endpoint = endpoint
        self._workers = workers
        self._lead_s = lead_s

    def run(self, schedule: Schedule,
            on_progress: Callable[[int], None] | None = None) -> list[RequestRecord]:
        """Run `schedule` and return every worker's records; `on_progress` gets the number of
        finished requests across workers about twice a second."""
        actors = [GeneratorWorker.options(scheduling_strategy="SPREAD").remote(i)  # type: ignore[attr-defined]
                  for i in range(self._workers)]
        try:
            ray.get([a.ready.remote() for a in actors])
            start_epoch = time.time() + self._lead_s
            pending = [a.run.remote(schedule.shard(i, self._workers), self._endpoint, start_epoch)
                       for i, a in enumerate(actors)]
            refs = list(pending)
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                if on_progress is not None:
                    on_progress(sum(ray.get([a.progress.remote() for a in actors])))
            # Times are all relative to the same start, so the shards merge by concatenation.
            return [r for shard in ray.get(refs) for r in shard]
        finally:
            for actor in actors:
                ray.kill(actor)
