"""`Fleet`: replay requests through a router onto `ReplicaModel`s, optionally autoscaled.

The clock jumps from event to event, and each kind of event has its handler: an arrival, a
replica's next prefill or stream end, a stats report (Serve's `record_routing_stats` /
`record_autoscaling_stats` period), an autoscaling decision, a replica ready after its cold
start, a drain deadline. Around the policy the fleet does what Serve does: it averages each
replica's metrics over the look-back window, applies the upscale and downscale delays and the
replica bounds, scales from zero at once when requests wait at the handle, and stops replicas
not yet serving first, then the newest serving one. A stopped replica takes no new requests
and finishes its streams until the drain deadline, when the rest are cut.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sim.replica_model import ReplicaModel, ReplicaSpec, SimRequest


class SimRouter(Protocol):
    """A routing algorithm under replay."""

    def route(self, req: SimRequest, replicas: Sequence[ReplicaModel],
              now: float) -> ReplicaModel: ...

    def on_report(self, replica: ReplicaModel, now: float) -> None: ...

    def on_finish(self, req: SimRequest, replica: ReplicaModel, now: float) -> None: ...

    def set_draining(self, replicas: frozenset[int], now: float) -> None:
        """The autoscaler is about to remove these: send them nothing new if it can."""


@dataclass(frozen=True)
class FleetView:
    """What Serve's `AutoscalingContext` tells a policy about the fleet."""

    metrics: dict[int, dict[str, float]]  # serving replica -> metrics over the look-back
    serving: int  # replicas running
    target: int  # replicas running or starting
    ongoing: float  # requests at the replicas and waiting at the handle


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int  # the count asked for, before Serve's delays and bounds
    draining: frozenset[int] = frozenset()  # replicas to send no new requests


class Scaler(Protocol):
    """An autoscaling policy under replay, asked at every decision period."""

    def decide(self, view: FleetView, now: float) -> ScaleDecision: ...


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
    """Serve's upscale/downscale delays: a decision must hold that long before it applies.
    From zero replicas with requests waiting, Serve scales up at once."""

    def __init__(self, up_s: float, down_s: float) -> None:
        self.up_s, self.down_s = up_s, down_s
        self._since: float | None = None
        self._direction = 0

    def apply(self, desired: int, current: int, now: float, waiting: bool) -> int:
        if current == 0 and waiting:
            self._since, self._direction = None, 0
            return max(1, desired)
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


class Fleet:
    """One replay: `Fleet(requests, router, cfg, scaler).run()`."""

    def __init__(self, requests: list[SimRequest], router: SimRouter, cfg: FleetConfig,
                 scaler: Scaler | None = None) -> None:
        self.requests, self.router, self.cfg, self.scaler = requests, router, cfg, scaler
        self.replicas: list[ReplicaModel] = []
        self.active: list[ReplicaModel] = []  # serving, in the order they became ready
        self.starting: dict[int, float] = {}  # idx -> ready time
        self.started_at: dict[int, float] = {}
        self.stopped_at: dict[int, float] = {}
        self.draining: frozenset[int] = frozenset()  # serving, but sent no new requests
        self.pending: deque[SimRequest] = deque()  # waiting at the handle for any replica
        self.timeline: list[tuple[float, int]] = []
        self._samples: deque[tuple[float, int, dict[str, float]]] = deque()
        self._delays = _Delays(cfg.upscale_delay_s, cfg.downscale_delay_s)
        self._events: list[tuple[float, int, str, int]] = []
        self._next: dict[int, float] = {}  # replica -> the time of its one live "replica" event
        self._seq = itertools.count()
        self._unarrived = len(requests)

    def run(self) -> FleetResult:
        """Replay every request (sorted by arrival); they come back with timings filled in."""
        for _ in range(self.cfg.initial_replicas):
            self._start_replica(0.0, ready=True)
        for i, r in enumerate(self.requests):
            self._push(r.arrival, "arrival", i)
        self._push(0.0, "report", 0)
        if self.scaler is not None:
            self._push(self.cfg.decision_period_s, "scale", 0)
        handlers = {"arrival": self._on_arrival, "replica": self._on_replica,
                    "report": self._on_report, "scale": self._on_scale,
                    "ready": self._on_ready, "deadline": self._on_deadline}
        while self._events and self._busy():
            now, _, kind, arg = heapq.heappop(self._events)
            handlers[kind](now, arg)
        end = max([r.finished_at or 0.0 for r in self.requests] + [0.0])
        replica_s = sum(self.stopped_at.get(i, end) - t for i, t in self.started_at.items())
        return FleetResult(self.requests, replica_s, [r.busy_s for r in self.replicas],
                           self.timeline)

    # -- events -------------------------------------------------------------------------------

    def _on_arrival(self, now: float, i: int) -> None:
        self._unarrived -= 1
        if self.active:
            self._dispatch(self.requests[i], now)
        else:
            self.pending.append(self.requests[i])

    def _on_replica(self, now: float, idx: int) -> None:
        if self._next.get(idx) != now:
            return  # superseded: the replica was touched since and its next event moved
        del self._next[idx]
        if idx not in self.stopped_at:
            self._touch(self.replicas[idx], now)

    def _on_report(self, now: float, _: int) -> None:
        for rep in self.active:
            self._touch(rep, now)
            self.router.on_report(rep, now)
            self._samples.append((now, rep.idx, rep.autoscaling_stats()))
        if self._busy():
            self._push(now + self.cfg.report_period_s, "report", 0)

    def _on_scale(self, now: float, _: int) -> None:
        assert self.scaler is not None
        cfg = self.cfg
        current = len(self.active) + len(self.starting)
        decision = self.scaler.decide(self._view(now, current), now)
        self._set_draining(decision.draining & {r.idx for r in self.active}, now)
        desired = self._delays.apply(decision.replicas, current, now, bool(self.pending))
        target = max(cfg.min_replicas, min(cfg.max_replicas, desired))
        for _ in range(target - current):
            self._start_replica(now, ready=False)
        for _ in range(current - target):
            self._stop_one(now)
        self.timeline.append((now, len(self.active) + len(self.starting)))
        self._push(now + cfg.decision_period_s, "scale", 0)

    def _on_ready(self, now: float, idx: int) -> None:
        if idx not in self.starting:
            return  # stopped before it was ready
        del self.starting[idx]
        rep = self.replicas[idx]
        rep.start_serving(now)
        self.active.append(rep)
        while self.pending:
            self._dispatch(self.pending.popleft(), now)

    def _on_deadline(self, now: float, idx: int) -> None:
        if idx in self.stopped_at:
            return
        rep = self.replicas[idx]
        self._touch(rep, now)
        for r in rep.abort_all():
            self.router.on_finish(r, rep, now)
        self.stopped_at[idx] = now

    # -- helpers ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._unarrived > 0 or bool(self.pending) or any(r.ongoing for r in self.replicas)

    def _push(self, t: float, kind: str, arg: int) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, arg))

    def _touch(self, rep: ReplicaModel, now: float) -> None:
        finished: list[SimRequest] = []
        rep.advance(now, finished)
        for r in finished:
            self.router.on_finish(r, rep, now)
        nxt = rep.next_event()
        if nxt != float("inf") and self._next.get(rep.idx) != nxt:
            self._next[rep.idx] = nxt
            self._push(nxt, "replica", rep.idx)
        if rep not in self.active and rep.idx not in self.starting and rep.ongoing == 0:
            self.stopped_at.setdefault(rep.idx, now)

    def _start_replica(self, now: float, ready: bool) -> None:
        rep = ReplicaModel(len(self.replicas), self.cfg.spec, now)
        self.replicas.append(rep)
        self.started_at[rep.idx] = now
        if ready:
            rep.start_serving(now)
            self.active.append(rep)
        else:
            self.starting[rep.idx] = now + self.cfg.spec.cold_start_s
            self._push(self.starting[rep.idx], "ready", rep.idx)

    def _stop_one(self, now: float) -> None:
        """Serve's choice: a replica not yet serving (the newest), else the newest serving."""
        if self.starting:
            idx = max(self.starting)
            del self.starting[idx]
            self.stopped_at[idx] = now
        elif len(self.active) > 1:
            rep = self.active.pop()
            self._set_draining(self.draining - {rep.idx}, now)
            self._push(now + self.cfg.drain_deadline_s, "deadline", rep.idx)
            self._touch(rep, now)

    def _dispatch(self, req: SimRequest, now: float) -> None:
        rep = self.router.route(req, self.active, now)
        self._touch(rep, now)
        rep.submit(req, [])
        self._touch(rep, now)

    def _set_draining(self, draining: frozenset[int], now: float) -> None:
        if draining != self.draining:
            self.draining = draining
            self.router.set_draining(draining, now)

    def _view(self, now: float, current: int) -> FleetView:
        """Each serving replica's metrics averaged over the look-back window, as Serve hands
        them to a policy, oldest replica first."""
        samples = self._samples
        while samples and samples[0][0] < now - self.cfg.look_back_s:
            samples.popleft()
        by_replica: dict[int, list[dict[str, float]]] = {}
        for _, idx, m in samples:
            by_replica.setdefault(idx, []).append(m)
        metrics: dict[int, dict[str, float]] = {}
        for rep in self.active:
            ms = by_replica.get(rep.idx)
            if ms:
                names = {k for m in ms for k in m}
                metrics[rep.idx] = {k: sum(m[k] for m in ms if k in m)
                                    / sum(1 for m in ms if k in m) for k in names}
        ongoing = sum(r.ongoing for r in self.active) + len(self.pending)
        return FleetView(metrics, len(self.active), current, float(ongoing))
