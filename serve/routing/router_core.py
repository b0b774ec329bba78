"""`RouterCore`: the prefix- and load-aware choice of a replica, free of Ray Serve.

For each candidate replica the core estimates what sending the request there would cost, in
prefill-token units (see `RouterKnobs`): the prompt tokens the replica does not cache, what
taking them in would evict early from a cache that has taken in more than the others (or,
where caches turn over faster than most history comes back, the history that concentrating
intake on fewer caches lets the others keep), the prefill queued ahead, its outstanding
decode work and a penalty as its KV cache fills. The cheapest wins; exact ties go to the
less loaded replica, then to a random one. A session sticks to its replica unless that replica
is overloaded. Before any replica has reported, a prompt goes where this router sent its
prefix, if anywhere; otherwise the choice is power-of-two-choices on the requests this router
has in flight.

Everything here is a pure function of reports, the router's own history and the clock passed
in, so it is tested without Serve and reused by the trace-replay benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serve.engine.output_length import R1_PRIOR, LengthPrior, OutputLengthEstimator
from serve.routing.knobs import RouterKnobs
from serve.routing.replica_view import InFlight, ReplicaReport, ReplicaView
from serve.routing.reuse_intervals import ReuseIntervals
from serve.routing.session_table import SessionTable

_REGIME_EVERY = 64  # requests routed between updates of the intake weight


@dataclass(frozen=True)
class RoutedRequest:
    """What the router needs of one request: its prompt's block hashes, lengths, session."""

    request_id: str
    block_hashes: tuple[int, ...]  # chain hashes of the prompt's full page-sized blocks
    page_size: int  # tokens per block of block_hashes
    prompt_tokens: int
    max_tokens: int
    expected_output_tokens: int | None = None  # the caller's guess, if it has one
    session_id: str | None = None


@dataclass(frozen=True)
class ScoredReplica:
    replica_id: str
    cost: float  # prefill-token units: uncached prompt + load
    load: float  # the part of cost that is not this request's own prefill
    cached_tokens: int  # prompt tokens predicted cached there
    kv_utilization: float  # after this request joins


@dataclass(frozen=True)
class Choice:
    """Replicas best first (Serve tries them in order), and why the first was chosen."""

    ranked: tuple[str, ...]
    predicted_cached_tokens: int
    reason: str  # "cost" | "session" | "power_of_two"


class RouterCore:
    """Keeps a `ReplicaView` per replica and picks replicas for requests."""

    def __init__(self, knobs: RouterKnobs | None = None, rng: random.Random | None = None,
                 estimator: OutputLengthEstimator | None = None) -> None:
        self.knobs = knobs or RouterKnobs()
        self.estimator = estimator or OutputLengthEstimator(
            LengthPrior(self.knobs.prior_output_tokens, R1_PRIOR.sigma))
        self._rng = rng or random.Random()
        self._views: dict[str, ReplicaView] = {}
        self._sessions = SessionTable(self.knobs.max_sessions)
        self._reuse = ReuseIntervals()
        self.intake_weight = self.knobs.eviction_weight  # e in `RouterKnobs`: + evens out
        self._routed = 0
        self.page_size: int | None = None  # from the latest report: the unit of block hashes
        self.draining: frozenset[str] = frozenset()

    # -- replica set and reports ------------------------------------------------------------

    def sync_replicas(self, replica_ids: Iterable[str]) -> None:
        """Forget every replica not in `replica_ids` (dead, or scaled away)."""
        keep = set(replica_ids)
        for rid in [r for r in self._views if r not in keep]:
            self.forget(rid)

    def forget(self, replica_id: str) -> None:
        self._views.pop(replica_id, None)
        self._sessions.forget_replica(replica_id)

    def known_replicas(self) -> list[str]:
        return list(self._views)

    def set_draining(self, replica_ids: Iterable[str]) -> None:
        """Replicas the autoscaler is about to remove: ranked after every other, so they take
        a new request only when no other replica can, and their streams run down."""
        self.draining = frozenset(replica_ids)

    def report(self, replica_id: str, stats: Mapping[str, Any], now: float) -> None:
        """A replica's `record_routing_stats()` dict arrived."""
        parsed = ReplicaReport.from_stats(stats)
        if parsed is None:
            return
        self.page_size = parsed.page_size
        self._view(replica_id).apply_report(parsed, now, self.knobs.report_lag_s)

    # -- the choice -------------------------------------------------------------------------

    def choose(self, candidates: Sequence[str], request: RoutedRequest | None,
               now: float) -> Choice:
        """Rank `candidates` for `request` (None: nothing known of it, balance load only)."""
        open_ = [c for c in candidates if c not in self.draining]
        if open_ and len(open_) < len(candidates):
            choice = self.choose(open_, request, now)
            last = tuple(c for c in candidates if c in self.draining)
            return Choice(choice.ranked + last, choice.predicted_cached_tokens, choice.reason)
        if not candidates:
            return Choice((), 0, "cost")
        views = [self._view(rid) for rid in candidates]
        if request is None or all(v.report is None for v in views):
            return self._before_reports(views, request, now)
        intakes = [v.intake(now, self.knobs.intake_horizon_s) for v in views]
        mean = sum(intakes) / len(intakes)
        scored = [self._score(v, request, now, i / mean - 1.0 if mean > 0 else 0.0)
                  for v, i in zip(views, intakes, strict=True)]
        sticky = self._sessions.get(request.session_id) if request.session_id else None
        # A prompt sent where its KV does not fit waits for streams to end (minutes, for R1):
        # no cache hit repays that, so replicas with room come first whatever their cost.
        full = self.knobs.kv_hard_limit
        by_cost = sorted(scored, key=lambda s: (s.kv_utilization >= full, s.cost, s.load,
                                                self._rng.random()))
        for s in scored:
            if s.replica_id == sticky and not self._overloaded(s, scored):
                rest = tuple(c.replica_id for c in by_cost if c is not s)
                return Choice((s.replica_id, *rest), s.cached_tokens, "session")
        return Choice(tuple(s.replica_id for s in by_cost), by_cost[0].cached_tokens, "cost")

    def _score(self, view: ReplicaView, request: RoutedRequest, now: float,
               excess_intake: float) -> ScoredReplica:
        """`excess_intake`: the replica's intake over the candidates' mean, minus 1."""
        k = self.knobs
        report = view.report
        cached = self._predicted_cached(view, request, now)
        uncached = request.prompt_tokens - cached
        queued_prefill = (report.queued_prefill_tokens if report else 0) + view.inflight_prefill
        decode = self._reported_decode(view, now) + view.inflight_decode
        kv_total = report.kv_tokens_total if report else 0
        kv_used = ((report.kv_tokens_used if report else 0) + view.inflight_kv + uncached
                   + self.expected_output(request))
        util = kv_used / kv_total if kv_total else 0.0
        over = max(0.0, util - k.kv_soft_limit) / (1.0 - k.kv_soft_limit)
        # every running stream slows each prefill step a little: the queue's and this prompt's
        slowdown = k.prefill_slowdown_per_running * ((report.running if report else 0)
                                                     + view.inflight_count)
        load = (queued_prefill * (1.0 + slowdown) + uncached * slowdown
                + k.decode_cost_per_token * decode + k.kv_penalty_tokens * over**2)
        # the bonus beyond the compute a hit saves keeps a conversation home (router_knobs.md)
        keeps = report is not None and report.keeps_what_it_caches
        min_match = k.retained_min_match if keeps else k.affinity_min_match
        weight = k.retained_hit_weight if keeps else k.cache_hit_weight
        match = cached / request.prompt_tokens if request.prompt_tokens else 0.0
        grown = min(1.0, match / min_match) ** 2 if min_match > 0 else 1.0
        own = uncached - (weight - 1.0) * grown * cached
        if not keeps:  # a cache that evicts: its lifetime (router_knobs.md)
            own += self.intake_weight * uncached * excess_intake
        return ScoredReplica(view.replica_id, own + load, load, cached, util)

    @staticmethod
    def _predicted_cached(view: ReplicaView, request: RoutedRequest, now: float) -> int:
        """Prompt tokens the replica is expected to hold, known or guessed (0 where its
        report hashes pages of another size)."""
        report = view.report
        if report is not None and report.page_size != request.page_size:
            return 0
        blocks = view.cached_prefix_blocks(request.block_hashes, now)
        return min(blocks * request.page_size, request.prompt_tokens)

    def _overloaded(self, s: ScoredReplica, scored: list[ScoredReplica]) -> bool:
        least = min(c.load for c in scored)
        return (s.load - least > self.knobs.session_overload_tokens
                or s.kv_utilization >= self.knobs.kv_hard_limit)

    def _before_reports(self, views: list[ReplicaView], request: RoutedRequest | None,
                        now: float) -> Choice:
        """No replica has reported yet: where this router sent the prompt's prefix, if it sent
        it anywhere, else power of two choices."""
        if request is not None:
            cached = {v.replica_id: self._predicted_cached(v, request, now) for v in views}
            best = max(views, key=lambda v: cached[v.replica_id])
            if cached[best.replica_id] > 0:
                rest = tuple(v.replica_id for v in views if v is not best)
                return Choice((best.replica_id, *rest), cached[best.replica_id], "cost")
        return self._power_of_two(views)

    def _power_of_two(self, views: list[ReplicaView]) -> Choice:
        """Cold start: two random replicas, the one with fewer of our requests in flight."""
        pair = self._rng.sample(views, min(2, len(views)))
        pair.sort(key=lambda v: (v.ongoing, self._rng.random()))
        return Choice(tuple(v.replica_id for v in pair), 0, "power_of_two")

    def _reported_decode(self, view: ReplicaView, now: float) -> float:
        """Decode tokens the requests in the last report are expected still to generate (the
        engine's expectation from its output-length distribution), less what the replica has
        generated since at its reported rate."""
        r = view.report
        if r is None:
            return 0.0
        owed = r.expected_remaining_decode_tokens
        return max(0.0, owed - r.generation_tokens_per_s * (now - view.reported_at))

    def expected_output(self, request: RoutedRequest) -> float:
        if request.expected_output_tokens is not None:
            return float(min(request.expected_output_tokens, request.max_tokens))
        return self.estimator.expected_total(request.max_tokens)

    # -- what happened ----------------------------------------------------------------------

    def on_routed(self, replica_id: str, request: RoutedRequest | None, now: float) -> int:
        """The request went to `replica_id`: count its load there until a report includes it,
        and guess its prefix is cached there while it is in flight. Returns the predicted
        cached tokens."""
        view = self._view(replica_id)
        if request is None:
            view.ongoing += 1
            return 0
        cached = self._predicted_cached(view, request, now)
        uncached = request.prompt_tokens - cached
        out = self.expected_output(request)
        view.add_inflight(request.request_id, InFlight(now, uncached, out, uncached + out))
        view.pin(request.request_id, request.block_hashes)
        view.take_in(uncached, now, self.knobs.intake_horizon_s)
        if request.session_id:
            self._sessions.put(request.session_id, replica_id)
        self._reuse.observe(request.block_hashes, request.page_size, now)
        self._routed += 1
        if self._routed % _REGIME_EVERY == 0:
            self._update_intake_weight(now)
        return cached

    def _update_intake_weight(self, now: float) -> None:
        """Even intake out, or concentrate it where the evicting caches turn over faster than
        most reused prefixes come back (benchmarks/router_knobs.md)."""
        k = self.knobs
        evicting = [(v, v.report) for v in self._views.values()
                    if v.report is not None and not v.report.keeps_what_it_caches]
        capacity = sum(r.kv_tokens_total for _, r in evicting)
        rate = sum(v.intake_rate(now, k.intake_horizon_s) for v, _ in evicting)
        share = self._reuse.share_within(capacity / rate) if rate > 0 else None
        concentrate = share is not None and share < k.concentrate_below_share
        self.intake_weight = -k.concentration_weight if concentrate else k.eviction_weight

    def on_completed(self, replica_id: str, request_id: str, now: float,
                     output_tokens: int | None = None) -> None:
        """The request finished; `output_tokens`, when known, teaches the length estimate.
        Its prefix stays a guess for `speculative_ttl_s` more, unless a report confirms it."""
        view = self._views.get(replica_id)
        if view is not None:
            view.complete(request_id)
            view.speculate(view.unpin(request_id), now, self.knobs.speculative_ttl_s)
        if output_tokens is not None:
            self.estimator.observe(output_tokens)

    def _view(self, replica_id: str) -> ReplicaView:
        view = self._views.get(replica_id)
        if view is None:
            view = self._views[replica_id] = ReplicaView(replica_id)
        return view
