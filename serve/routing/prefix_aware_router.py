"""`PrefixAwareRouter`: the Ray Serve `RequestRouter` of the engine deployment.

A thin adapter over `RouterCore`: it turns Serve's pending requests into `RoutedRequest`s (block
hashes of `GenerationRequest.prompt_token_ids`, the same `block_hashes` the engine's cache
uses), feeds replicas' `record_routing_stats()` dicts to the core as they change, and relays
Serve's lifecycle callbacks. Nothing here calls a replica: the stats arrive with the replica
set Serve pushes to every handle. The replica the autoscaler is draining comes from its
`ScalingBoard`, read in the background (`DrainingWatch`), and is ranked last.

Install with `serve.routing.request_router_config(knobs)`. The router runs in the process that
holds the handle (the OpenAI ingress).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ray.serve._private.common import ReplicaID
from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.scaling_board import ScalingBoard
from serve.engine.base import GenerationRequest
from serve.engine.block_hash import block_hashes
from serve.routing.draining_watch import DrainingWatch
from serve.routing.knobs import RouterKnobs
from serve.routing.router_core import Choice, RoutedRequest, RouterCore
from serve.routing.routing_metrics import record_routed

_MEMO_SIZE = 4096  # requests whose hashes and choice are kept while Serve retries routing
# The label of a request that Serve placed on a replica other than our first choice (that one
# was at its max_ongoing_requests).
FALLBACK = "fallback"


class PrefixAwareRouter(RequestRouter):
    """Routes each request to the replica with the least estimated cost (see `RouterCore`)."""

    def initialize_state(self, read_decision: Callable[[], ScalingDecision | None] | None = None,
                         **knobs: Any) -> None:
        """Called by Serve with `request_router_kwargs` (the fields of `RouterKnobs`).
        `read_decision` reads the autoscaler's latest decision (default: the engine
        deployment's `ScalingBoard`)."""
        tuned = RouterKnobs.from_dict(knobs)
        self.core = RouterCore(tuned)
        if read_decision is None:
            d = self._deployment_id
            read_decision = ScalingBoard(d.app_name, d.name).read
        self._draining = DrainingWatch(read_decision, self.core.set_draining,
                                       tuned.stats_period_s)
        self._last_stats: dict[str, Any] = {}  # replica id -> the stats dict last taken
        self._memo: OrderedDict[str, RoutedRequest | None] = OrderedDict()
        self._choices: OrderedDict[str, Choice] = OrderedDict()  # internal id -> latest choice
        self._sent: dict[str, tuple[str, float]] = {}  # internal id -> (replica id, sent at)

    # -- Serve's hooks ------------------------------------------------------------------------

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """Every candidate, one per rank, best first: Serve takes the first that accepts."""
        if pending_request is not None:
            # We always consider every replica, so a retry should back off, not spin.
            pending_request.routing_context.should_backoff = True
        self._draining.ensure_running()
        now = time.monotonic()
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        for rid, replica in by_id.items():
            self._take_stats(rid, replica.routing_stats, now)
        choice = self.core.choose(list(by_id), self._routed_request(pending_request), now)
        if pending_request is not None:
            _remember(self._choices, pending_request.metadata.internal_request_id, choice)
        return [[by_id[rid]] for rid in choice.ranked]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID,
                          result: Any) -> None:
        now = time.monotonic()
        request = self._routed_request(pending_request)
        internal_id = pending_request.metadata.internal_request_id
        self._memo.pop(internal_id, None)
        choice = self._choices.pop(internal_id, None)
        cached = self.core.on_routed(replica_id.unique_id, request, now)
        self._sent[internal_id] = (replica_id.unique_id, now)
        if request is not None:
            first = choice is not None and choice.ranked[:1] == (replica_id.unique_id,)
            reason = choice.reason if first else FALLBACK
            record_routed(reason, request.prompt_tokens, cached, self.core.intake_weight)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        sent = self._sent.pop(internal_request_id, None)
        if sent is None:
            return
        rid, sent_at = sent
        now = time.monotonic()
        self.core.on_completed(rid, internal_request_id, now,
                               self._estimate_output_tokens(rid, now - sent_at))

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self.core.sync_replicas(r.replica_id.unique_id for r in replicas)
        live = {r.replica_id.unique_id for r in replicas}
        for rid in [r for r in self._last_stats if r not in live]:
            del self._last_stats[rid]

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.core.forget(replica_id.unique_id)
        self._last_stats.pop(replica_id.unique_id, None)

    # -- helpers ----------------------------------------------------------------------------

    def _take_stats(self, replica_id: str, stats: dict[str, Any], now: float) -> None:
        # Serve replaces the dict when a new report arrives; identity tells new from seen.
        if stats and stats is not self._last_stats.get(replica_id):
            self._last_stats[replica_id] = stats
            self.core.report(replica_id, stats, now)

    def _routed_request(self, pending: PendingRequest | None) -> RoutedRequest | None:
        """The request as the core sees it; None when it carries no `GenerationRequest`
        (then only load decides). Memoised: Serve may ask to route one request many times."""
        if pending is None:
            return None
        key = pending.metadata.internal_request_id
        if key in self._memo:
            return self._memo[key]
        gen = next((a for a in (*pending.args, *pending.kwargs.values())
                    if isinstance(a, GenerationRequest)), None)
        request = None
        if gen is not None:
            page = self.core.page_size
            tokens = gen.prompt_token_ids
            request = RoutedRequest(
                request_id=key,
                block_hashes=tuple(block_hashes(tokens, page)) if page else (),
                page_size=page or 1,
                prompt_tokens=len(tokens),
                max_tokens=gen.sampling.max_tokens,
                expected_output_tokens=gen.expected_output_tokens,
                session_id=pending.metadata.session_id or gen.session_id or None,
            )
        _remember(self._memo, key, request)
        return request

    def _estimate_output_tokens(self, replica_id: str, duration_s: float) -> int | None:
        """Serve tells the router only that a stream ended, not how long it was; estimate its
        length from its duration and the replica's per-stream generation rate."""
        stats = self._last_stats.get(replica_id) or {}
        running = int(stats.get("running", 0))
        rate = float(stats.get("generation_tokens_per_s", 0.0))
        if running <= 0 or rate <= 0.0 or duration_s <= 0.0:
            return None
        return max(1, round(duration_s * rate / running))


def _remember(memo: OrderedDict, key: str, value: Any) -> None:
    """Keep `value` under `key`, dropping the oldest entries past `_MEMO_SIZE`."""
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)
