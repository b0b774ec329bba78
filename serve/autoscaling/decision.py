"""`ScalingDecision`: what the token-load policy decided at one tick, and why.

It travels as a plain dict: in Serve's `policy_state`, on the `ScalingBoard` (for the router,
which stops sending new requests to a replica being drained, for the ingress's `/metrics` and
for `r1serve status`) and in the simulator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SIGNALS = ("kv", "prefill", "decode")  # the demand signals, in the order shown


@dataclass(frozen=True)
class ScalingDecision:
    at: float  # the policy's clock
    replicas: int  # what the policy asked Serve for
    running: int  # replicas serving at the tick
    target: int  # Serve's target before the tick (serving plus starting)
    demand: dict[str, float] = field(default_factory=dict)  # signal -> replicas it needs now
    needed: float = 0.0  # replicas for the forecast load with headroom
    growth: float = 1.0  # arrival load one horizon ahead over the load now
    headroom: float = 0.0  # share of capacity kept for bursts
    arrival_tokens_per_s: float = 0.0  # now, on the fitted trend
    forecast_tokens_per_s: float = 0.0  # one horizon ahead
    cold_start_s: float = 0.0  # the horizon
    cold_start_measured: bool = False
    kv_share: float = 0.0  # of its KV pool a replica may fill while TTFT keeps its objectives
    draining: tuple[str, ...] = ()  # replicas sent no new requests, to remove them
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingDecision:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["draining"] = tuple(known.get("draining") or ())  # JSON has lists
        return cls(**known)

    def why(self) -> str:
        """One line for operators: the size asked for, each signal's demand, the forecast."""
        size = (f"{self.replicas} replica{'' if self.replicas == 1 else 's'} "
                f"({self.running} serving): {self.reason}")
        if not self.demand:
            return size
        shown = ", ".join(f"{s} {self.demand[s]:.1f}" for s in SIGNALS if s in self.demand)
        start = "measured" if self.cold_start_measured else "configured"
        return (f"{size}; demand in replicas now: {shown} (KV planned to "
                f"{self.kv_share:.0%} full); load x{self.growth:.2f} one cold "
                f"start ({self.cold_start_s:.0f} s, {start}) ahead, {self.headroom:.0%} headroom "
                f"for bursts -> {self.needed:.1f} needed")
