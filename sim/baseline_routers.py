"""Routers the router replay and the fleet simulator compare ours with, each as the algorithm
its project documents: round robin, power of two choices (Serve's default), Ray Serve LLM's
PrefixCacheAffinityRouter (on Ray's own `PrefixTree`) and smg's cache_aware policy."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ray.llm._internal.serve.routing_policies.prefix_aware.prefix_tree import PrefixTree

from sim.replica_model import ReplicaModel, SimRequest


class RoundRobin:
    name = "round-robin"

    def __init__(self, seed: int = 0) -> None:
        self._i = 0

    def route(self, req: SimRequest, reps: Sequence[ReplicaModel], now: float) -> ReplicaModel:
        self._i += 1
        return reps[self._i % len(reps)]

    def on_report(self, replica: ReplicaModel, now: float) -> None: ...

    def on_finish(self, req: SimRequest, replica: ReplicaModel, now: float) -> None: ...

    def set_draining(self, replicas: frozenset[int], now: float) -> None: ...


class PowerOfTwo(RoundRobin):
    """Serve's default: two random replicas, the shorter queue (ongoing requests)."""

    name = "power-of-two"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def route(self, req: SimRequest, reps: Sequence[ReplicaModel], now: float) -> ReplicaModel:
        pair = self._rng.sample(list(reps), min(2, len(reps)))
        return min(pair, key=lambda r: r.ongoing)


def _text(blocks: Sequence[int]) -> str:
    """One character per block: Ray's tree matches text, and equal blocks are equal chars."""
    return "".join(chr(0x10000 + b) for b in blocks)


class RayPrefixAffinity(PowerOfTwo):
    """PrefixCacheAffinityRouter's choice with Ray's own PrefixTree: above the match-rate
    threshold the best-matching replicas, else the replicas with the smallest trees; among
    those, Serve takes the first with the shortest queue. Imbalance threshold inf: load never
    overrides the prefix."""

    name = "ray-prefix-affinity"

    def __init__(self, seed: int = 0, match_rate_threshold: float = 0.1) -> None:
        super().__init__(seed)
        self._tree = PrefixTree()
        self._threshold = match_rate_threshold
        self._known: set[str] = set()

    def route(self, req: SimRequest, reps: Sequence[ReplicaModel], now: float) -> ReplicaModel:
        by_name = {f"r{r.idx}": r for r in reps}
        new = [n for n in by_name if n not in self._known]
        if new:
            self._tree.add_tenants(new, now)
            self._known.update(new)
        text = _text(req.blocks)
        matched, tenants = self._tree.prefix_match(text, list(by_name))
        if not text or len(matched) / len(text) < self._threshold:
            tenants = [t for t in (self._tree.get_smallest_tenants() or []) if t in by_name]
        ranked = [by_name[t] for t in tenants or []]
        chosen = (min(ranked, key=lambda r: r.ongoing) if ranked
                  else super().route(req, reps, now))
        self._tree.insert(text, f"r{chosen.idx}", now)
        return chosen


class SmgCacheAware(RoundRobin):
    """smg's cache_aware policy: shortest queue when load is imbalanced (both thresholds),
    else the worker with the longest prefix match above cache_threshold, else the least
    loaded. Its approximate tree is kept here on block ids (the token-tree path)."""

    name = "smg-cache-aware"

    def __init__(self, seed: int = 0, cache_threshold: float = 0.3, abs_t: int = 64,
                 rel_t: float = 1.5) -> None:
        self._owners: dict[int, dict[int, float]] = {}  # block -> replica idx -> last use
        self._c, self._abs, self._rel = cache_threshold, abs_t, rel_t

    def route(self, req: SimRequest, reps: Sequence[ReplicaModel], now: float) -> ReplicaModel:
        loads = [r.ongoing for r in reps]
        least = reps[loads.index(min(loads))]  # Rust's min_by_key: first minimum
        if max(loads) - min(loads) > self._abs and max(loads) > min(loads) * self._rel:
            chosen = least
        else:
            live = {r.idx: r for r in reps}
            holders = set(live)
            depth, best = 0, None
            for b in req.blocks:
                owners = self._owners.get(b, {})
                holders = {h for h in holders if h in owners}
                if not holders:
                    break
                depth += 1
                best = max(holders, key=lambda h: owners[h])
            rate = min(depth * 512, req.prompt_tokens) / max(req.prompt_tokens, 1)
            chosen = live[best] if best is not None and rate > self._c else least
        for b in req.blocks:
            self._owners.setdefault(b, {})[chosen.idx] = now
        return chosen
