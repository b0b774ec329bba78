"""The token-load policy's latest decision as Prometheus gauges, in a registry of their own.

The policy runs in Serve's controller, which has no `/metrics` of ours; the ingress exposes
these beside its own, read from the `ScalingBoard` when `/metrics` is scraped and kept for a few
seconds, so that several scrapers cost one read. Without a decision (not on Ray, another policy,
none posted yet, or the board unreadable) the gauges are absent rather than zero: a zero would
read as "no replicas needed". Likewise, until replicas report load the planning gauges (the
forecast, the demand) are absent and only what the policy decided shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serve.autoscaling.decision import SIGNALS, ScalingDecision

log = logging.getLogger(__name__)

PREFIX = "r1serve_autoscaling_"


Gauges = dict[str, tuple[str, Callable[[ScalingDecision], float]]]  # name -> (help, value)

# What the policy did: shown for every decision.
_DECIDED: Gauges = {
    "desired_replicas": ("Engine replicas the token-load policy asked Serve for.",
                         lambda d: d.replicas),
    "running_replicas": ("Engine replicas serving when the policy decided.",
                         lambda d: d.running),
    "target_replicas": ("Serve's target before the decision: replicas serving plus starting.",
                        lambda d: d.target),
    "draining": ("Replicas being drained (sent no new requests) to remove them.",
                 lambda d: float(len(d.draining))),
    "decision_timestamp_seconds": ("When the policy decided (Unix time); an old value means "
                                   "the policy no longer posts.", lambda d: d.at),
}
# What it planned on: only once replicas have reported load (before, the policy holds and
# these are placeholders, not measurements).
_PLANNED: Gauges = {
    "needed_replicas": ("Replicas the forecast load one cold start ahead needs, with burst "
                        "headroom.", lambda d: d.needed),
    "arrival_tokens_per_second": ("Arrival load now, on the fitted trend (tokens/s).",
                                  lambda d: d.arrival_tokens_per_s),
    "forecast_tokens_per_second": ("Arrival load forecast one cold start ahead (tokens/s).",
                                   lambda d: d.forecast_tokens_per_s),
    "growth_ratio": ("Forecast load one cold start ahead over the load now (at least 1).",
                     lambda d: d.growth),
    "headroom_ratio": ("Share of capacity kept for bursts of arrivals about the trend.",
                       lambda d: d.headroom),
    "cold_start_seconds": ("Seconds a new replica takes to serve, as the policy plans it.",
                           lambda d: d.cold_start_s),
    "cold_start_measured": ("1 when the cold start is measured, 0 while it is the configured "
                            "targets.cold_start_s.", lambda d: float(d.cold_start_measured)),
    "kv_share_ratio": ("Share of its KV pool a replica is planned to fill: what TTFT has shown "
                       "it can, at most targets.kv_utilization.", lambda d: d.kv_share),
}
DEMAND = "demand_replicas"
DEMAND_HELP = ("Replicas each signal needs for the load now: kv (KV in use and prompts "
               "waiting for it), prefill (prompt tokens computed per second), decode (streams "
               "and expected decode work).")


class ScalingCollector(Collector):
    """Gauges of the latest `ScalingDecision` that `read` (a `ScalingBoard.read`) returns."""

    def __init__(self, read: Callable[[], ScalingDecision | None], cache_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.cache_s = cache_s
        self._clock = clock
        self._read_at = -float("inf")
        self._decision: ScalingDecision | None = None
        self._failing = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        decision = self._latest()
        if decision is None:
            return
        gauges = {**_DECIDED, **_PLANNED} if decision.demand else _DECIDED
        for name, (help_text, value) in gauges.items():
            yield GaugeMetricFamily(PREFIX + name, help_text, value=value(decision))
        demand = GaugeMetricFamily(PREFIX + DEMAND, DEMAND_HELP, labels=["signal"])
        for signal in SIGNALS:
            if signal in decision.demand:
                demand.add_metric([signal], decision.demand[signal])
        if demand.samples:
            yield demand

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # the families depend on the board: nothing to check at registration

    def _latest(self) -> ScalingDecision | None:
        now = self._clock()
        if now - self._read_at < self.cache_s:
            return self._decision
        self._read_at = now
        try:
            self._decision = self.read()
            self._failing = False
        except Exception:  # the gauges are advisory: a scrape must not fail for them
            if not self._failing:
                log.warning("could not read the scaling decision for /metrics", exc_info=True)
            self._failing = True
            self._decision = None
        return self._decision


def scaling_registry(read: Callable[[], ScalingDecision | None],
                     cache_s: float = 5.0) -> CollectorRegistry:
    """A registry holding only the collector of `read`'s decisions, for `build_openai_app`'s
    extra registries."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScalingCollector(read, cache_s))
    return registry
