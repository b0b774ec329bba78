"""Prometheus metrics of the OpenAI ingress, in a registry of its own (never the process-wide
one, so that several apps in one process, as in tests, do not collide).

Latencies are measured where the client feels them, at the ingress: time to first token,
time between tokens, and end to end. Replica KV-cache usage is read from `replica_stats()`
when `/metrics` is scraped, so it costs nothing between scrapes; so are the extra registries
of components in the ingress process (the router's metrics, the autoscaler's decision).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serve.api.engine_client import EngineClient
from serve.api.responses import UsageInfo

log = logging.getLogger(__name__)

# R1 reasons for thousands of tokens: end-to-end latencies run to many minutes.
_TTFT_BUCKETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
_ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2.5)
_E2E_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 2400, 3600)


class ApiMetrics:
    """The ingress's metrics and their text exposition, followed by `extra_registries` (those
    of components living in the ingress process, such as the request router)."""

    def __init__(self, extra_registries: Sequence[CollectorRegistry] = ()) -> None:
        self.extra_registries = tuple(extra_registries)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("r1serve_api_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.ttft = Histogram("r1serve_api_time_to_first_token_seconds",
                              "Time from admission to a choice's first token", ["endpoint"],
                              buckets=_TTFT_BUCKETS, registry=r)
        self.itl = Histogram("r1serve_api_inter_token_latency_seconds",
                             "Time between consecutive tokens of a choice", ["endpoint"],
                             buckets=_ITL_BUCKETS, registry=r)
        self.e2e = Histogram("r1serve_api_e2e_request_latency_seconds",
                             "Time from admission to the last token of a successful request",
                             ["endpoint"], buckets=_E2E_BUCKETS, registry=r)
        self.prompt_tokens = Counter("r1serve_api_prompt_tokens", "Prompt tokens served",
                                     registry=r)
        self.cached_tokens = Counter("r1serve_api_cached_prompt_tokens",
                                     "Prompt tokens served from the prefix cache", registry=r)
        self.reasoning_tokens = Counter("r1serve_api_reasoning_tokens",
                                        "Generated tokens up to and including </think>",
                                        registry=r)
        self.answer_tokens = Counter("r1serve_api_answer_tokens",
                                     "Generated tokens after </think> (all of a raw completion)",
                                     registry=r)
        self.in_flight = Gauge("r1serve_api_requests_in_flight", "Admitted HTTP requests",
                               registry=r)
        self.waiting = Gauge("r1serve_api_queue_depth",
                             "Engine requests (choices) in flight that have no token yet",
                             registry=r)
        self.kv_usage = Gauge("r1serve_replica_kv_cache_usage_ratio",
                              "Fraction of a replica's KV-cache pages in use", ["replica"],
                              registry=r)
        self.replica_running = Gauge("r1serve_replica_running_requests",
                                     "Requests a replica is decoding", ["replica"], registry=r)
        self.replica_waiting = Gauge("r1serve_replica_waiting_requests",
                                     "Requests queued in a replica", ["replica"], registry=r)

    def observe(self, endpoint: str, choices: int) -> RequestObserver:
        """Start timing one admitted request of `choices` engine requests."""
        return RequestObserver(self, endpoint, choices)

    async def render(self, client: EngineClient) -> bytes:
        """The text exposition, with replica gauges refreshed from `client` first."""
        for gauge in (self.kv_usage, self.replica_running, self.replica_waiting):
            gauge.clear()  # replicas that went away must not linger with stale values
        try:
            stats = await client.replica_stats()
        except Exception:
            log.warning("replica stats unavailable for /metrics", exc_info=True)
            stats = {}
        for replica, s in stats.items():
            total = s.kv_pages_total or 1
            self.kv_usage.labels(replica).set(s.kv_pages_used / total)
            self.replica_running.labels(replica).set(s.running)
            self.replica_waiting.labels(replica).set(s.waiting)
        own = generate_latest(self.registry)
        if not self.extra_registries:
            return own
        # In a thread: an extra registry's collector may read a remote store at scrape time
        # (the autoscaler's board in Ray's GCS), which must not stall the streams this loop
        # serves.
        extra = await asyncio.to_thread(
            lambda: b"".join(generate_latest(r) for r in self.extra_registries))
        return own + extra


class RequestObserver:
    """Times one request's choices and records its outcome exactly once."""

    def __init__(self, metrics: ApiMetrics, endpoint: str, choices: int) -> None:
        self._m = metrics
        self._endpoint = endpoint
        self._start = time.monotonic()
        self._last_token: dict[int, float] = {}
        self._waiting = set(range(choices))
        self._done = False
        metrics.in_flight.inc()
        metrics.waiting.inc(choices)

    def delta(self, index: int, num_tokens: int, finished: bool) -> None:
        """A delta of `num_tokens` tokens arrived for choice `index`."""
        now = time.monotonic()
        if index in self._waiting and (num_tokens or finished):
            self._waiting.discard(index)
            self._m.waiting.dec()
            if num_tokens:
                self._m.ttft.labels(self._endpoint).observe(now - self._start)
        elif num_tokens and index in self._last_token:
            self._m.itl.labels(self._endpoint).observe(
                (now - self._last_token[index]) / num_tokens)
        if num_tokens:
            self._last_token[index] = now

    def finish(self, status: int, usage: UsageInfo | None) -> None:
        """Record the request's status and, when it produced one, its token usage."""
        if self._done:
            return
        self._done = True
        m = self._m
        m.waiting.dec(len(self._waiting))
        m.in_flight.dec()
        m.requests.labels(self._endpoint, str(status)).inc()
        if status == 200:
            m.e2e.labels(self._endpoint).observe(time.monotonic() - self._start)
        if usage is not None:
            reasoning = (usage.completion_tokens_details.reasoning_tokens
                         if usage.completion_tokens_details else 0)
            m.prompt_tokens.inc(usage.prompt_tokens)
            m.cached_tokens.inc(usage.prompt_tokens_details.cached_tokens)
            m.reasoning_tokens.inc(reasoning)
            m.answer_tokens.inc(usage.completion_tokens - reasoning)
