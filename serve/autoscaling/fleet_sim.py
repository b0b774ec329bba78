"""`run_fleet`: replay requests through a router onto `ReplicaModel`s, optionally autoscaled.

The clock jumps from event to event: arrivals, a replica's next prefill or stream end, stats
reports (Serve's `record_routing_stats` / `record_autoscaling_stats` period), autoscaling
decisions, replicas becoming ready after their cold start, and drain deadlines. Scaling down
follows Serve: starting replicas go first, then the newest; a removed replica takes no new
requests and finishes its streams until the drain deadline, when the rest are cut.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from serve.autoscaling.replica_model import ReplicaModel, ReplicaSpec, SimRequest


class SimRouter(Protocol):
    """A routing algorithm under replay."""

    def route(self, req: SimRequest, replicas: Sequence[ReplicaModel],
              now: float) -> ReplicaModel: ...

    def on_report(self, replica: ReplicaModel, now: float) -> None: ...

    def on_finish(self, req: SimRequest, replica: ReplicaModel, now: float) -> None: ...


# (per-replica metrics averaged over the look-back window, replica count incl. starting) -> desired
Scaler = Callable[[list[dict[str, float]], int, int, float], int]


@dataclass(frozen=True)
class FleetConfig:
    spec: ReplicaSpec = field(default_factory=ReplicaSpec)
    initial_replicas: int = 4
    min_replicas: int = 1
    max_replicas: int = 16
    report_period_s: float = 10.0  # Serve's default routing/autoscaling stats period
    decision_period_s: float = 10.0
    look_back_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 300.0
    drain_deadline_s: float = 600.0


@dataclass
class FleetResult:
    requests: list[SimRequest]
    replica_seconds: float
    busy_seconds: list[float]  # per replica ever started
    timeline: list[tuple[float, int]]  # (time, replicas started or serving)


class _Delays:
    """Serve's upscale/downscale delays: a decision must hold that long before it applies."""

    def __init__(self, up_s: float, down_s: float) -> None:
        self.up_s, self.down_s = up_s, down_s
        self._since: float | None = None
        self._direction = 0

    def apply(self, desired: int, current: int, now: float) -> int:
        direction = (desired > current) - (desired < current)
        if direction == 0:
            self._since, self._direction = None, 0
            return current
        if direction != self._direction:
            self._since, self._direction = now, direction
        delay = self.up_s if direction > 0 else self.down_s
        if now - self._since >= delay - 1e-9:
            self._since, self._direction = None, 0
            return desired
        return current


def run_fleet(requests: list[SimRequest], router: SimRouter, cfg: FleetConfig,
              scaler: Scaler | None = None) -> FleetResult:
    """Replay `requests` (sorted by arrival); returns them with their timings filled in."""
    seq = itertools.count()
    events: list[tuple[float, int, str, int]] = []
    replicas: list[ReplicaModel] = []
    active: list[ReplicaModel] = []  # serving, in start order
    starting: dict[int, float] = {}  # idx -> ready time
    started_at: dict[int, float] = {}
    stopped_at: dict[int, float] = {}
    version: dict[int, int] = {}
    samples: deque[tuple[float, int, dict[str, float]]] = deque()
    pending: deque[SimRequest] = deque()  # waiting at the handle for any replica
    delays = _Delays(cfg.upscale_delay_s, cfg.downscale_delay_s)
    timeline: list[tuple[float, int]] = []

    def push(t: float, kind: str, arg: int) -> None:
        heapq.heappush(events, (t, next(seq), kind, arg))

    def touch(rep: ReplicaModel, now: float) -> None:
        finished: list[SimRequest] = []
        rep.advance(now, finished)
        for r in finished:
            router.on_finish(r, rep, now)
        version[rep.idx] = version.get(rep.idx, 0) + 1
        nxt = rep.next_event()
        if nxt != float("inf"):
            push(nxt, "replica", rep.idx)
        if rep not in active and rep.idx not in starting and rep.ongoing == 0:
            stopped_at.setdefault(rep.idx, now)

    def start_replica(now: float, ready: bool) -> None:
        rep = ReplicaModel(len(replicas), cfg.spec, now)
        replicas.append(rep)
        started_at[rep.idx] = now
        if ready:
            active.append(rep)
        else:
            starting[rep.idx] = now + cfg.spec.cold_start_s
            push(starting[rep.idx], "ready", rep.idx)

    def dispatch(req: SimRequest, now: float) -> None:
        rep = router.route(req, active, now)
        touch(rep, now)
        rep.submit(req, [])
        touch(rep, now)

    def scale(now: float) -> None:
        while samples and samples[0][0] < now - cfg.look_back_s:
            samples.popleft()
        by_replica: dict[int, list[dict[str, float]]] = {}
        for _, idx, m in samples:
            by_replica.setdefault(idx, []).append(m)
        metrics = [{k: sum(m.get(k, 0.0) for m in ms) / len(ms) for k in ms[-1]}
                   for idx, ms in by_replica.items() if any(r.idx == idx for r in active)]
        current = len(active) + len(starting)
        desired = scaler(metrics, len(active), current, now)
        target = max(cfg.min_replicas, min(cfg.max_replicas, delays.apply(desired, current, now)))
        for _ in range(target - current):
            start_replica(now, ready=False)
        for _ in range(current - target):
            if starting:
                idx = max(starting)  # newest first, as Serve stops them
                del starting[idx]
                stopped_at[idx] = now
            elif len(active) > 1:
                rep = active.pop()  # the newest serving replica drains
                push(now + cfg.drain_deadline_s, "deadline", rep.idx)
                touch(rep, now)
        timeline.append((now, len(active) + len(starting)))

    for _ in range(cfg.initial_replicas):
        start_replica(0.0, ready=True)
    for i, r in enumerate(requests):
        push(r.arrival, "arrival", i)
    push(0.0, "report", 0)
    if scaler is not None:
        push(cfg.decision_period_s, "scale", 0)
    remaining = len(requests)
    while events and (remaining > 0 or pending or any(r.ongoing for r in replicas)):
        now, _, kind, arg = heapq.heappop(events)
        if kind == "arrival":
            req = requests[arg]
            if active:
                dispatch(req, now)
            else:
                pending.append(req)
            remaining -= 1
        elif kind == "replica":
            if arg not in stopped_at:
                touch(replicas[arg], now)
        elif kind == "report":
            for rep in active:
                touch(rep, now)
                router.on_report(rep, now)
                samples.append((now, rep.idx, rep.autoscaling_stats()))
            if remaining > 0 or any(r.ongoing for r in replicas):
                push(now + cfg.report_period_s, "report", 0)
        elif kind == "scale" and scaler is not None:
            scale(now)
            push(now + cfg.decision_period_s, "scale", 0)
        elif kind == "ready" and arg in starting:
            del starting[arg]
            active.append(replicas[arg])
            while pending:
                dispatch(pending.popleft(), now)
        elif kind == "deadline" and arg not in stopped_at:
            rep = replicas[arg]
            touch(rep, now)
            for r in rep.abort_all():
                router.on_finish(r, rep, now)
            stopped_at[arg] = now
    end = max([r.finished_at or 0.0 for r in requests] + [0.0])
    replica_s = sum(stopped_at.get(i, end) - t for i, t in started_at.items())
    return FleetResult(requests, replica_s, [r.busy_s for r in replicas], timeline)
