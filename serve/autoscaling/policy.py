"""`TokenLoadPolicy`: a Ray Serve custom autoscaling policy that counts tokens, not requests,
and sizes the fleet for the load one cold start ahead.

One R1 request may prefill 30K tokens or decode 30K more; counting requests (Serve's default)
cannot tell a fleet of short chats from one of long reasoning streams, and a replica of 8 to 32
GPUs takes minutes to start. At every tick the policy:

1. reads each replica's metrics (`FleetLoad`) and, once per sample period, learns a replica's
   capacity (`CapacityModel`), the KV share at which TTFT keeps its objectives (`SloShare`)
   and the fleet's arrival rate in tokens (`LoadForecast`);
2. turns the load into replicas per signal (KV, prefill, decode) at the learnt share of
   capacity, and takes the largest;
3. scales that by the arrival trend one horizon ahead (Serve's upscale delay plus the measured
   cold start, `ColdStart`), never below the load now, and adds headroom for bursts (`burst_z`
   times the spread of its own past forecasts' errors);
4. scales down only after spare capacity has lasted `downscale_delay_s`, and only a replica
   whose streams finish within the drain deadline by their bound (max_tokens - generated, not
   the expectation). Ray 2.60 lets a policy give only a count; Serve stops replicas not yet
   running first, then the newest. So the policy names the spare replicas, newest first, as
   draining (the router sends them nothing new, and they run down in parallel) and asks for
   one fewer whenever the newest one's longest stream fits the deadline.

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
from serve.autoscaling.slo_share import Misses, SloShare
from serve.autoscaling.targets import ScalingTargets

SAMPLE_S = 10.0  # Serve asks many times a second; capacity and trend learn at this pace
OVERRUN = 1.1  # load needing this many times the replicas serving overruns the plan


class TokenLoadPolicy:
    """The policy Serve calls every control-loop tick; a class, so Serve builds it once with
    `policy_kwargs` (the fields of `ScalingTargets`) and its learning persists."""

    def __init__(self, **targets: Any) -> None:
        self.targets = t = ScalingTargets.from_dict(targets)
        self.capacity = CapacityModel(t.itl_s, t.itl_utilization)
        self.kv_share = SloShare(t.kv_utilization)
        self.forecast = LoadForecast(t.trend_window_s, t.burst_window_s, SAMPLE_S)
        self.cold_start = ColdStart(t.cold_start_s)
        self.board: ScalingBoard | None = None
        self._sampled_at = -math.inf
        self._spare_since: float | None = None  # when the fleet last became bigger than needed
        self._starting = False  # replicas asked for are not serving yet

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """`ctx` is a `ray.serve.config.AutoscalingContext`."""
        now = ctx.current_time if ctx.current_time is not None else time.time()
        loads = replica_loads(ctx.aggregated_metrics or {}, ctx.running_replicas)
        self.cold_start.observe(now, ctx.target_num_replicas, ctx.current_num_replicas,
                                max((x.startup_s for x in loads), default=0.0))
        fleet = FleetLoad.of(loads, ctx.total_num_requests)
        self._starting = ctx.target_num_replicas > ctx.current_num_replicas
        if loads and now - self._sampled_at >= SAMPLE_S:
            self._learn(now, fleet)
        decision = self.decide(now, fleet, ctx.current_num_replicas, ctx.target_num_replicas,
                               ctx.capacity_adjusted_min_replicas)
        if self.board is None:
            self.board = ScalingBoard(ctx.app_name or "", ctx.deployment_name or "")
        self.board.publish(decision)
        return decision.replicas, {**(ctx.policy_state or {}), "r1serve": decision.to_dict()}

    def _learn(self, now: float, fleet: FleetLoad) -> None:
        """Once per sample period: capacity, the KV share TTFT allows, the arrival trend."""
        t = self.targets
        self._sampled_at = now
        self.capacity.learn([x.sample() for x in fleet.replicas])
        counts = [fleet.first_tokens_over(objective, waiting) * SAMPLE_S
                  for objective in (t.ttft_p90_s, t.ttft_p99_s) for waiting in (False, True)]
        demand = fleet.demand(self.capacity.capacity(), t, self.kv_share.value,
                              self.forecast.latest.kv_token_steps)
        overrun = max(demand.values(), default=0.0) > OVERRUN * len(fleet.replicas)
        self.kv_share.learn(now, overrun, fleet.total("first_tokens_per_s") * SAMPLE_S,
                            Misses(*counts), starting=self._starting)
        self.forecast.update(now, fleet.arrivals(), t.upscale_delay_s + self.cold_start.estimate_s)

    def decide(self, now: float, fleet: FleetLoad, running: int, target: int,
               min_replicas: int = 0) -> ScalingDecision:
        t = self.targets
        if not fleet.replicas:  # no metrics yet (replicas starting): hold
            return ScalingDecision(now, target, running, target,
                                   cold_start_s=self.cold_start.estimate_s,
                                   cold_start_measured=self.cold_start.measured,
                                   reason="no reports yet")
        share = self.kv_share.value
        ahead = self.forecast.latest
        demand = fleet.demand(self.capacity.capacity(), t, share, ahead.kv_token_steps)
        growth, headroom = max(1.0, ahead.growth()), t.burst_z * ahead.spread
        needed = max(demand.values(), default=0.0) * growth * (1.0 + headroom)
        wanted = math.ceil(needed - 1e-9)
        base = ScalingDecision(now, target, running, target, demand, needed, growth, headroom,
                               ahead.level, ahead.ahead, self.cold_start.estimate_s,
                               self.cold_start.measured, kv_share=share)
        if wanted > target:
            self._spare_since = None
            return _with(base, wanted, (), "adding for the load one cold start ahead")
        if target <= min_replicas:
            self._spare_since = None
            return _with(base, target, (), f"at min_replicas ({min_replicas})")
        if wanted == target:
            self._spare_since = None
            return _with(base, target, (), "the load needs what runs and starts")
        # Spare capacity from here on: its wait runs even while it stays within the margin,
        # so a fluctuation in a long decline does not start the wait over.
        if self._spare_since is None:
            self._spare_since = now
        if needed > t.scale_down_fill * (target - 1):
            return _with(base, target, (), f"spare capacity under the margin of one replica "
                         f"({t.scale_down_fill:.0%} of {target - 1})")
        return self._scale_down(base, fleet, min_replicas)

    def _scale_down(self, base: ScalingDecision, fleet: FleetLoad,
                    min_replicas: int) -> ScalingDecision:
        """Fewer, once spare capacity has lasted: replicas not yet serving at once; serving
        ones newest first (as Serve removes them), drained in parallel, each removed when its
        streams fit the drain deadline by their bound."""
        t, now = self.targets, base.at
        waited = now - (self._spare_since if self._spare_since is not None else now)
        if waited < t.downscale_delay_s:
            return _with(base, base.target, (), f"spare capacity for {waited:.0f} of "
                         f"{t.downscale_delay_s:.0f} s before removing a replica")
        if base.target > base.running:  # Serve stops one still starting: nothing to drain
            return _with(base, base.target - 1, (), "cancelling a replica not yet serving")
        if base.target <= 1 and base.needed > 0:
            return _with(base, base.target, (), "the last replica still has work")
        keep = max(min_replicas, math.ceil(base.needed / t.scale_down_fill - 1e-9), 1
                   if base.needed > 0 else 0)
        spare = fleet.replicas[keep:][::-1]  # newest first
        if not spare:  # the spare ones have not reported yet
            return _with(base, base.target, (), "waiting for the newest replica's report")
        drain_s = spare[0].drain_s(fleet.itl_s() or t.itl_s)
        draining = tuple(_key(x.replica_id) for x in spare)
        if drain_s <= t.drain_deadline_s:
            return _with(base, base.target - 1, draining,
                         f"removing the newest replica: its streams finish within "
                         f"{drain_s:.0f} s of the {t.drain_deadline_s:.0f} s drain deadline")
        return _with(base, base.target, draining,
                     f"draining the {len(spare)} newest first: the newest one's longest "
                     f"stream could run {drain_s:.0f} s, past the {t.drain_deadline_s:.0f} s "
                     "drain deadline")


def _with(base: ScalingDecision, replicas: int, draining: tuple[str, ...],
          reason: str) -> ScalingDecision:
    return replace(base, replicas=replicas, draining=draining, reason=reason)


def _key(replica_id: Any) -> str:
    """The id the router knows a replica by (Serve's `ReplicaID.unique_id`)."""
    return str(getattr(replica_id, "unique_id", replica_id))
