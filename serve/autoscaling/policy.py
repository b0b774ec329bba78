"""`TokenLoadPolicy`: a Ray Serve custom autoscaling policy that counts tokens, not requests,
and sizes the fleet for the load one cold start ahead.

One R1 request may prefill 30K tokens or decode 30K more; counting requests (Serve's default)
cannot tell a fleet of short chats from one of long reasoning streams, and a replica of 8 to 32
GPUs takes minutes to start. At every tick the policy:

1. reads each replica's metrics (`FleetLoad`) and, once per sample period, learns a replica's
   capacity (`CapacityModel`) and the fleet's arrival rate in tokens (`LoadForecast`);
2. turns the load into replicas per signal (KV, prefill, decode) at the planned share of
   capacity, and takes the largest;
3. scales that by the arrival trend one horizon ahead (Serve's upscale delay plus the measured
   cold start, `ColdStart`), never below the load now, and adds headroom for bursts (`burst_z`
   spreads of the arrival rate about its trend);
4. adds a replica beyond those serving when the observed TTFT misses its objective;
5. scales down only after spare capacity has lasted `downscale_delay_s`, one replica at a
   time, and only a replica whose streams finish within the drain deadline by their bound
   (max_tokens - generated, not the expectation): it first names the replica Serve will
   remove (the newest serving one: Serve stops replicas not yet running first, then the
   newest) as draining, so the router sends it nothing new, and asks for one fewer when its
   longest stream fits the deadline.

Each tick's `ScalingDecision` goes back to Serve in `policy_state["r1serve"]` and onto the
`ScalingBoard`, where the router, the metrics endpoint and `r1serve status` read it. Serve
applies the replica bounds and the upscale delay around the policy.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from serve.autoscaling.cold_start import ColdStart
from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.fleet_load import FleetLoad, replica_loads
from serve.autoscaling.load_forecast import LoadForecast
from serve.autoscaling.replica_capacity import CapacityModel
from serve.autoscaling.scaling_board import ScalingBoard
from serve.autoscaling.targets import ScalingTargets

SAMPLE_S = 10.0  # Serve asks many times a second; capacity and trend learn at this pace


class TokenLoadPolicy:
    """The policy Serve calls every control-loop tick; a class, so Serve builds it once with
    `policy_kwargs` (the fields of `ScalingTargets`) and its learning persists."""

    def __init__(self, **targets: Any) -> None:
        self.targets = t = ScalingTargets.from_dict(targets)
        self.capacity = CapacityModel(t.itl_s, t.itl_utilization)
        self.forecast = LoadForecast(t.trend_window_s, t.burst_window_s, SAMPLE_S)
        self.cold_start = ColdStart(t.cold_start_s)
        self.board: ScalingBoard | None = None
        self._sampled_at = -math.inf
        self._spare_since: float | None = None  # when the fleet last became bigger than needed

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """`ctx` is a `ray.serve.config.AutoscalingContext`."""
        now = ctx.current_time if ctx.current_time is not None else time.time()
        loads = replica_loads(ctx.aggregated_metrics or {}, ctx.running_replicas)
        self.cold_start.observe(now, ctx.target_num_replicas, ctx.current_num_replicas,
                                max((x.startup_s for x in loads), default=0.0))
        fleet = FleetLoad.of(loads, ctx.total_num_requests)
        if loads and now - self._sampled_at >= SAMPLE_S:
            self._sampled_at = now
            self.capacity.learn([x.sample() for x in loads])
            self.forecast.add(now, fleet.arrival_tokens_per_s)
        decision = self.decide(now, fleet, ctx.current_num_replicas, ctx.target_num_replicas,
                               ctx.capacity_adjusted_min_replicas)
        if self.board is None:
            self.board = ScalingBoard(ctx.app_name or "", ctx.deployment_name or "")
        self.board.publish(decision)
        return decision.replicas, {**(ctx.policy_state or {}), "r1serve": decision.to_dict()}

    def decide(self, now: float, fleet: FleetLoad, running: int, target: int,
               min_replicas: int = 0) -> ScalingDecision:
        t = self.targets
        if not fleet.replicas:  # no metrics yet (replicas starting): hold
            return ScalingDecision(now, target, running, target,
                                   cold_start_s=self.cold_start.estimate_s,
                                   cold_start_measured=self.cold_start.measured,
                                   reason="no reports yet")
        demand = fleet.demand(self.capacity.capacity(), t)
        horizon = t.upscale_delay_s + self.cold_start.estimate_s
        ahead = self.forecast.at(now, horizon)
        growth, headroom = max(1.0, ahead.growth()), t.burst_z * ahead.spread
        needed = max(demand.values(), default=0.0) * growth * (1.0 + headroom)
        p90, p99 = fleet.ttft_s()
        if (p90 or 0.0) > t.ttft_p90_s or (p99 or 0.0) > t.ttft_p99_s:
            demand["ttft"] = running + 1.0  # missing the objective: one more than serving
            needed = max(needed, demand["ttft"])
        wanted = math.ceil(needed - 1e-9)
        base = ScalingDecision(now, target, running, target, demand, needed, growth, headroom,
                               ahead.level, ahead.ahead, self.cold_start.estimate_s,
                               self.cold_start.measured)
        if wanted > target:
            self._spare_since = None
            return _with(base, wanted, None, "adding for the load one cold start ahead")
        if target <= min_replicas:
            self._spare_since = None
            return _with(base, target, None, f"at min_replicas ({min_replicas})")
        if wanted == target or needed > t.scale_down_fill * (target - 1):
            self._spare_since = None
            return _with(base, target, None, "the load needs what runs and starts")
        return self._scale_down(base, fleet)

    def _scale_down(self, base: ScalingDecision, fleet: FleetLoad) -> ScalingDecision:
        """One fewer, once spare capacity has lasted and the replica Serve removes can drain."""
        t, now = self.targets, base.at
        if self._spare_since is None:
            self._spare_since = now
        waited = now - self._spare_since
        if waited < t.downscale_delay_s:
            return _with(base, base.target, None, f"spare capacity for {waited:.0f} of "
                         f"{t.downscale_delay_s:.0f} s before removing a replica")
        if base.target > base.running:  # Serve stops one still starting: nothing to drain
            return _with(base, base.target - 1, None, "cancelling a replica not yet serving")
        if base.target <= 1 and base.needed > 0:
            return _with(base, base.target, None, "the last replica still has work")
        newest = fleet.replicas[-1]
        drain_s = newest.drain_s(fleet.itl_s() or t.itl_s)
        if drain_s <= t.drain_deadline_s:
            return _with(base, base.target - 1, _key(newest.replica_id),
                         f"removing the newest replica: its streams finish within "
                         f"{drain_s:.0f} s of the {t.drain_deadline_s:.0f} s drain deadline")
        return _with(base, base.target, _key(newest.replica_id),
                     f"draining the newest replica first: its longest stream could run "
                     f"{drain_s:.0f} s, past the {t.drain_deadline_s:.0f} s drain deadline")


def _with(base: ScalingDecision, replicas: int, draining: str | None,
          reason: str) -> ScalingDecision:
    return replace(base, replicas=replicas, draining=draining, reason=reason)


def _key(replica_id: Any) -> str:
    """The id the router knows a replica by (Serve's `ReplicaID.unique_id`)."""
    return str(getattr(replica_id, "unique_id", replica_id))
