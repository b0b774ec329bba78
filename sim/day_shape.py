"""`DayShape`: a day of traffic, a diurnal arrival rate with bursts, made of a trace's requests.

A real deployment sees a daily cycle: a night trough, a morning ramp, a day's peak, an evening
decline, and bursts the cycle does not explain (a batch job, a launch, a retry storm). The
shape here is a raised cosine from `trough_share` of the peak (the day starts and ends there)
to the peak at midday, and `bursts` short spells of `burst_factor` times the rate, at seeded
random times. Arrivals are a Poisson process of that rate (drawn by thinning); the requests
that arrive are the trace's own, in the trace's order, so its lengths and its prefix sharing
(the Mooncake trace's conversations) come with them. When the day needs more requests than the
trace holds it starts the trace again with fresh prefix ids and sessions, so no request finds
the cache of its own earlier copy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from sim.replica_model import SimRequest

_ID_STRIDE = 10_000_000  # block ids of a trace's k-th repetition start at k x this


@dataclass(frozen=True)
class DayShape:
    hours: float = 6.0  # one trough-to-trough cycle
    peak_rate: float = 2.4  # requests per second at the peak, outside bursts
    trough_share: float = 0.25  # the trough's rate as a share of the peak's
    bursts: int = 2
    burst_s: float = 300.0
    burst_factor: float = 1.6

    def __post_init__(self) -> None:
        if not (self.hours > 0 and self.peak_rate > 0 and 0 < self.trough_share <= 1
                and self.bursts >= 0 and self.burst_s > 0 and self.burst_factor >= 1):
            raise ValueError(f"{self!r}: hours, peak_rate and burst_s must be positive, "
                             "trough_share in (0, 1], bursts >= 0, burst_factor >= 1")

    @property
    def seconds(self) -> float:
        return self.hours * 3600.0

    def burst_starts(self, seed: int) -> list[float]:
        rng = random.Random(f"bursts/{seed}")
        return sorted(rng.uniform(0.0, self.seconds - self.burst_s) for _ in range(self.bursts))

    def rate(self, t: float, bursts: list[float]) -> float:
        """Requests per second at `t` seconds into the day."""
        phase = (1.0 - math.cos(2.0 * math.pi * t / self.seconds)) / 2.0  # 0 at the ends
        base = self.peak_rate * (self.trough_share + (1.0 - self.trough_share) * phase)
        burst = any(b <= t < b + self.burst_s for b in bursts)
        return base * (self.burst_factor if burst else 1.0)


def day_of(trace: list[SimRequest], shape: DayShape, seed: int = 0) -> list[SimRequest]:
    """The day's requests, in arrival order: `trace`'s requests (in their order, repeated
    as needed) at the arrival times of a Poisson process with `shape`'s rate."""
    if not trace:
        raise ValueError("the trace holds no requests")
    rng = random.Random(f"arrivals/{seed}")
    bursts = shape.burst_starts(seed)
    top = shape.peak_rate * shape.burst_factor
    out: list[SimRequest] = []
    t = 0.0
    while True:
        t += rng.expovariate(top)
        if t >= shape.seconds:
            break
        if rng.random() * top < shape.rate(t, bursts):
            k, i = divmod(len(out), len(trace))
            out.append(_copy(trace[i], k, len(out), t))
    return out


def _copy(req: SimRequest, k: int, rid: int, arrival: float) -> SimRequest:
    """The trace's request, as its k-th repetition arriving at `arrival`."""
    blocks = req.blocks if k == 0 else tuple(b + k * _ID_STRIDE for b in req.blocks)
    session = req.session if k == 0 or req.session is None else f"{req.session}/{k}"
    return replace(req, rid=rid, arrival=arrival, blocks=blocks, session=session, replica=-1,
                   cached_tokens=0, prefill_at=None, first_token_at=None, finished_at=None,
                   cut=False)
