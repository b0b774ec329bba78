"""`SloShare`: how full the fleet's KV may run while time to first token meets its objectives.

No constant says at what KV use TTFT breaks: it depends on the prompts (a few 80K-token
prompts fill a replica), on how evenly the router spreads them, on the prefix hits. So the
policy steers it by what TTFT shows, as an integral controller. Each sample brings the first
tokens sent since the last and, for the p90 and the p99 objective, how many were slower: all of
them, and those only queueing made late (in time but for the wait before their prefill began).
Only the second kind is capacity's to cure: a prompt whose prefill alone outlasts the
objective is late on any fleet. And only samples taken while the fleet runs at its plan judge
the plan: misses in a burst that overran it, before the replicas it called for came up, and
for a window after (the first tokens of its backlog come for many minutes), would lower the
plan for what the plan did not do. So each objective's allowance (10% of first tokens over the
p90 objective, 1% over the p99 one) is first spent on the misses no capacity cures, and the
controller aims the queueing misses at `AIM` of what is left (never less than `FLOOR_BUDGET` of
the allowance: an objective the prompts themselves break is held to that, not chased with
every replica there is).

Over `observe_s` (half an hour: at a request a second, 1,800 first tokens, enough to tell a
0.3% share of misses from twice that) the worse objective's queueing misses over their aim set
how far off the fleet is: above 1 the planned KV share falls, below 1 it rises, in proportion,
over `settle_s` (an hour: several cold starts and stream lives, so a correction shows before
the next piles on; the share a trace's prompts allow changes over hours, not minutes). It
rises at half the speed it falls and does not fall while replicas asked for are still
starting; it starts at, and never exceeds, the configured `kv_utilization`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_OFF = 2.0  # twice the aim or more: fall at that pace, no faster
# The estimate of a share near 1% from half an hour's 2,000-4,000 first tokens is noisy by about
# a quarter of itself: aiming at three quarters of the allowance keeps the noise inside it.
AIM = 0.75
FLOOR_BUDGET = 0.25
ALLOWED = (0.10, 0.01)  # share of first tokens a p90 and a p99 objective let through


@dataclass(frozen=True)
class Misses:
    """First tokens over the p90 and the p99 objective: all, and those queueing made late."""

    over_p90: float = 0.0
    waiting_p90: float = 0.0
    over_p99: float = 0.0
    waiting_p99: float = 0.0


class SloShare:
    def __init__(self, ceiling: float, floor: float = 0.2, observe_s: float = 1800.0,
                 settle_s: float = 3600.0, min_first_tokens: float = 1000.0) -> None:
        self.ceiling, self.floor = ceiling, floor
        self.observe_s, self.settle_s = observe_s, settle_s
        self.min_first_tokens = min_first_tokens
        self.value = ceiling
        self._recent: deque[tuple[float, float, Misses]] = deque()
        self._last: float | None = None
        self._past_plan_at: float | None = None

    def learn(self, now: float, overrun: bool, first_tokens: float, misses: Misses,
              starting: bool = False) -> None:
        """One sample: whether the load overran the serving replicas as planned (some signal
        needs more of them than serve), the first tokens sent since the last and the misses
        among them. A sample taken during an overrun, or soon after, says nothing of the
        plan and is left out. `starting`: replicas asked for are not serving yet, so the last
        correction has not shown: the plan does not fall further meanwhile."""
        if overrun:
            self._past_plan_at = now
        elif self._past_plan_at is None or now - self._past_plan_at >= self.observe_s:
            self._recent.append((now, first_tokens, misses))
        while self._recent and self._recent[0][0] < now - self.observe_s:
            self._recent.popleft()
        dt = 0.0 if self._last is None else now - self._last
        self._last = now
        off = self.off_objective()
        if off is None or dt <= 0 or (starting and off > 1.0):
            return
        step = (min(off, MAX_OFF) - 1.0) * dt / self.settle_s
        step = step if step > 0 else step / 2  # rise at half the speed of a fall
        self.value = min(self.ceiling, max(self.floor, self.value * (1.0 - step)))

    def off_objective(self) -> float | None:
        """The recent queueing misses over their aim, for the worse objective (1: on aim);
        None until `min_first_tokens` have been seen."""
        seen = sum(first for _, first, _ in self._recent)
        if seen < self.min_first_tokens:
            return None
        worst = 0.0
        for allowed, over, waiting in zip(ALLOWED, ("over_p90", "over_p99"),
                                          ("waiting_p90", "waiting_p99"), strict=True):
            late = sum(getattr(m, over) for _, _, m in self._recent) / seen
            queued = sum(getattr(m, waiting) for _, _, m in self._recent) / seen
            budget = AIM * max(FLOOR_BUDGET * allowed, allowed - (late - queued))
            worst = max(worst, queued / budget)
        return worst
