"""Distributed generation on a local Ray: the same totals from 2 workers as from 1."""

from __future__ import annotations

import pytest

from loadtest.arrival import RateArrival
from loadtest.endpoint import Endpoint
from loadtest.length_distribution import LengthDistribution
from loadtest.load_run import LoadRun
from loadtest.workloads import SyntheticReasoning

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    # address="local": a fresh cluster of our own, never one another test process started.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_two_workers_give_the_same_totals_as_one(local_ray, fake_server) -> None:
    server = fake_server()
    workload = SyntheticReasoning(24, LengthDistribution("uniform", 50, minimum=20, maximum=80),
                                  LengthDistribution("uniform", 10, minimum=4, maximum=16))
    schedule = RateArrival(rate=40.0, seed=1).schedule(workload.sessions())
    endpoint = Endpoint(server.url, "r1")
    totals = []
    for workers in (1, 2):
        result = LoadRun(endpoint, workers=workers, distributed=True, progress=False).run(schedule)
        s = result.summary
        assert {r.worker for r in result.records} == set(range(workers))
        # Every request was sent close to its shared due time, whichever worker sent it.
        # (a generous bound: two worker processes share 2 cores with the server and Ray)
        assert s.client_queue_s.percentiles["p99"] < 0.15
        totals.append((s.requests_completed, s.input_tokens, s.output_tokens,
                       s.reasoning_tokens, s.answer_tokens,
                       sorted((r.request_id, r.due_s) for r in result.records)))
    assert totals[0] == totals[1]
    assert totals[0][0] == 24
