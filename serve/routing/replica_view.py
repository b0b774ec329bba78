"""`ReplicaView`: what the router believes about one replica between its stats reports.

A report (`record_routing_stats()`, a dict of `EngineStats` fields) says what the replica held
and owed when it was taken. Between reports the router adds what it has itself sent since, and
guesses that the prefixes it sent are cached there ("speculative" blocks): while their request
is in flight (queued, the replica will compute them; running, it holds them), then for a
time-to-live after it ends, unless a report confirms them first.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serve.engine.block_hash import held_prefix

FULL_CACHE = 0.95  # a digest this share of the KV pool or more: the GPU cache is full


@dataclass(frozen=True)
class ReplicaReport:
    """The fields of one `EngineStats` report the router uses."""

    running: int
    waiting: int
    kv_tokens_used: int
    kv_tokens_total: int
    page_size: int
    queued_prefill_tokens: int
    expected_remaining_decode_tokens: int  # expected, from the engine's length estimate
    generation_tokens_per_s: float
    cached_blocks: frozenset[int]

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> ReplicaReport | None:
        """Parse a `dataclasses.asdict(EngineStats)` dict; None before a replica's first report
        (Serve hands out `{}` until then)."""
        if not stats or "page_size" not in stats:
            return None
        page = int(stats["page_size"])
        return cls(
            running=int(stats.get("running", 0)), waiting=int(stats.get("waiting", 0)),
            kv_tokens_used=int(stats.get("kv_pages_used", 0)) * page,
            kv_tokens_total=int(stats.get("kv_pages_total", 0)) * page,
            page_size=page,
            queued_prefill_tokens=int(stats.get("queued_prefill_tokens", 0)),
            expected_remaining_decode_tokens=int(stats.get("expected_remaining_decode_tokens", 0)),
            generation_tokens_per_s=float(stats.get("generation_tokens_per_s", 0.0)),
            cached_blocks=frozenset(stats.get("cached_block_hashes", ())),
        )

    @property
    def keeps_what_it_caches(self) -> bool:
        """The cache is not evicting: its digest holds more than the KV pool (a host-memory
        tier keeps what GPU memory drops) or clearly less (GPU memory has not filled yet), so a
        prefix cached there stays. A digest the size of the pool is a full GPU cache, which
        evicts to make room. An empty digest says nothing (an engine without a prefix cache, or
        one that has not reported its cache yet)."""
        held = len(self.cached_blocks) * self.page_size
        return held > self.kv_tokens_total or 0 < held < FULL_CACHE * self.kv_tokens_total


@dataclass(frozen=True)
class InFlight:
    """A request this router sent to the replica, as load the last report may not include."""

    sent_at: float
    prefill_tokens: int  # prompt tokens the replica must compute (not predicted cached)
    decode_tokens: float  # expected output tokens
    kv_tokens: float  # KV the request will occupy: uncached prompt plus expected output


class ReplicaView:
    """One replica's cache digest, reported load and the router's own additions since."""

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id
        self.report: ReplicaReport | None = None
        self.reported_at = 0.0
        self.ongoing = 0  # requests this router sent that have not completed
        self._speculative: dict[int, float] = {}  # block hash -> expiry time
        self._pinned: dict[int, int] = {}  # block hash -> in-flight requests that carry it
        self._pins: dict[str, tuple[int, ...]] = {}  # in-flight request id -> its block hashes
        # Expiry times in insertion order, each with how many hashes of _expiry_hashes it covers.
        self._expiries: deque[tuple[float, int]] = deque()
        self._expiries_hashes: deque[int] = deque()
        self._inflight: dict[str, InFlight] = {}
        # Running sums over _inflight, so a decision does not walk every in-flight request.
        self.inflight_prefill = 0
        self.inflight_decode = 0.0
        self.inflight_kv = 0.0
        self._intake = 0.0  # uncached prompt tokens sent here, decayed to _intake_at
        self._intake_at = 0.0
        self._intake_since: float | None = None  # when this router first sent intake here

    # -- reports --------------------------------------------------------------------------

    def apply_report(self, report: ReplicaReport, now: float, report_lag_s: float) -> None:
        """Take a new report. Requests sent before it was (probably) taken are in its figures
        now, so they stop counting twice; speculation it confirms becomes plain fact."""
        self.report, self.reported_at = report, now
        for rid in [r for r, f in self._inflight.items() if f.sent_at < now - report_lag_s]:
            self._drop_inflight(rid)
        for h in [h for h in self._speculative if h in report.cached_blocks]:
            del self._speculative[h]
        self.expire(now)

    # -- cache ----------------------------------------------------------------------------

    def cached_prefix_blocks(self, hashes: Sequence[int], now: float) -> int:
        """How many leading blocks of a request this replica holds, confirmed or speculated
        (a prefix cache holds a block only with all its predecessors)."""
        confirmed = self.report.cached_blocks if self.report else frozenset()
        spec, pinned = self._speculative, self._pinned

        def held(h: int) -> bool:
            return h in confirmed or h in pinned or spec.get(h, 0.0) > now

        return held_prefix(hashes, held)

    def pin(self, request_id: str, hashes: Sequence[int]) -> None:
        """A request carrying these blocks was sent here: they count as cached until it ends
        (a queue may hold it longer than any time-to-live)."""
        self.unpin(request_id)
        self._pins[request_id] = tuple(hashes)
        for h in hashes:
            self._pinned[h] = self._pinned.get(h, 0) + 1

    def unpin(self, request_id: str) -> tuple[int, ...]:
        """The request ended; returns its block hashes (empty if it was not pinned)."""
        hashes = self._pins.pop(request_id, ())
        for h in hashes:
            left = self._pinned[h] - 1
            if left:
                self._pinned[h] = left
            else:
                del self._pinned[h]
        return hashes

    def speculate(self, hashes: Sequence[int], now: float, ttl_s: float) -> None:
        """Assume the replica caches these blocks until `now + ttl_s`."""
        if not hashes:
            return
        expiry = now + ttl_s
        for h in hashes:
            self._speculative[h] = expiry
        self._expiries.append((expiry, len(hashes)))
        self._expiries_hashes.extend(hashes)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Forget speculation no report confirmed in time."""
        while self._expiries and self._expiries[0][0] <= now:
            expiry, n = self._expiries.popleft()
            for _ in range(n):
                h = self._expiries_hashes.popleft()
                if self._speculative.get(h, now + 1.0) <= now:
                    del self._speculative[h]

    # -- intake ---------------------------------------------------------------------------

    def intake(self, now: float, horizon_s: float) -> float:
        """Uncached prompt tokens this router sent here, each weighted exp(-age / horizon_s)."""
        return self._intake * math.exp(-max(0.0, now - self._intake_at) / horizon_s)

    def take_in(self, tokens: float, now: float, horizon_s: float) -> None:
        self._intake = self.intake(now, horizon_s) + tokens
        self._intake_at = max(now, self._intake_at)
        if self._intake_since is None:
            self._intake_since = now

    def intake_rate(self, now: float, horizon_s: float) -> float:
        """Uncached prompt tokens per second lately: the decayed intake over the decayed
        window, which is shorter than horizon_s while this router has sent for less long."""
        if self._intake_since is None or now <= self._intake_since:
            return 0.0
        window = -horizon_s * math.expm1(-(now - self._intake_since) / horizon_s)
        return self.intake(now, horizon_s) / window

    @property
    def inflight_count(self) -> int:
        return len(self._inflight)

    # -- load -----------------------------------------------------------------------------

    def add_inflight(self, request_id: str, flight: InFlight) -> None:
        self._drop_inflight(request_id)
        self._inflight[request_id] = flight
        self.inflight_prefill += flight.prefill_tokens
        self.inflight_decode += flight.decode_tokens
        self.inflight_kv += flight.kv_tokens
        self.ongoing += 1

    def complete(self, request_id: str) -> InFlight | None:
        """A request finished: it no longer adds load; returns what was recorded for it."""
        self.ongoing = max(0, self.ongoing - 1)
        return self._drop_inflight(request_id)

    def _drop_inflight(self, request_id: str) -> InFlight | None:
        f = self._inflight.pop(request_id, None)
        if f is not None:
            self.inflight_prefill -= f.prefill_tokens
            self.inflight_decode -= f.decode_tokens
            self.inflight_kv -= f.kv_tokens
        return f
