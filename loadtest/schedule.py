"""The arrival schedule: which sessions start when, built once and shared by all workers."""

from __future__ import annotations

from dataclasses import dataclass, replace

from loadtest.request_spec import Session


@dataclass(frozen=True)
class Schedule:
    """Sessions with due times, relative to the run's common start.

    Open loop (`concurrency is None`): session `s` is due at `s.arrival_s` whatever the server
    does. Closed loop: `len(slot_open_s)` slots each run one session after another, slot `i`
    opening at `slot_open_s[i]` (a ramp-up); sessions are taken in order, and none is started
    after `duration_s`. Either way a session's later turns are due when the previous turn's
    answer has arrived plus the turn's think time.
    """

    sessions: tuple[Session, ...]
    concurrency: int | None = None
    slot_open_s: tuple[float, ...] = ()
    duration_s: float | None = None
    #: What the load knob was, for reports and sweeps: requests/s or concurrency.
    offered_load: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and len(self.slot_open_s) != self.concurrency:
            raise ValueError("a closed-loop schedule needs one opening time per slot")

    @property
    def num_requests(self) -> int:
        return sum(s.num_requests for s in self.sessions)

    def shard(self, index: int, count: int) -> Schedule:
        """Worker `index` of `count`'s share: every `count`-th session (a session's turns stay
        together, since each waits for the previous answer) and, in closed loop, every
        `count`-th slot. Due times are unchanged, so the shards together are this schedule."""
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} outside 0..{count - 1}")
        if self.concurrency is None:
            return replace(self, sessions=self.sessions[index::count])
        slots = self.slot_open_s[index::count]
        return replace(self, sessions=self.sessions[index::count] if slots else (),
                       concurrency=len(slots), slot_open_s=slots)
