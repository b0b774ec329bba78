"""`CoreSimRouter`: our `RouterCore` driving replicas of the fleet simulator.

The same decision core the Serve adapter wraps, fed the replicas' `routing_stats()` at each
report and told each request's true output length when it finishes (in Serve the adapter only
estimates it from the stream's duration).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from serve.routing.knobs import RouterKnobs
from serve.routing.router_core import RoutedRequest, RouterCore
from sim.replica_model import ReplicaModel, SimRequest


class CoreSimRouter:
    name = "ours"

    def __init__(self, knobs: RouterKnobs | None = None, seed: int = 0) -> None:
        self.core = RouterCore(knobs or RouterKnobs(), rng=random.Random(seed))
        self.predicted_cached_tokens = 0

    def _request(self, req: SimRequest, page: int) -> RoutedRequest:
        return RoutedRequest(str(req.rid), req.blocks, page, req.prompt_tokens, req.max_tokens,
                             session_id=req.session)

    def route(self, req: SimRequest, replicas: Sequence[ReplicaModel],
              now: float) -> ReplicaModel:
        by_id = {str(r.idx): r for r in replicas}
        self.core.sync_replicas(by_id)
        page = replicas[0].spec.block_tokens
        request = self._request(req, page)
        choice = self.core.choose(list(by_id), request, now)
        rid = choice.ranked[0]
        self.predicted_cached_tokens += self.core.on_routed(rid, request, now)
        return by_id[rid]

    def on_report(self, replica: ReplicaModel, now: float) -> None:
        self.core.report(str(replica.idx), replica.routing_stats(), now)

    def on_finish(self, req: SimRequest, replica: ReplicaModel, now: float) -> None:
        self.core.on_completed(str(replica.idx), str(req.rid), now,
                               None if req.cut else req.output_tokens)

    def set_draining(self, replicas: frozenset[int], now: float) -> None:
        self.core.set_draining(str(i) for i in replicas)
