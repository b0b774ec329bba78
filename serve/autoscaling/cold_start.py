"""`ColdStart`: how long a replica the policy asks for takes to serve.

An R1 replica is 8 to 32 GPUs: nodes to provision (KubeRay), a placement group to schedule,
hundreds of GB of weights to load, CUDA graphs to capture. The policy measures the whole of it
itself: from the tick it raised Serve's target above the running replicas to the tick one more
replica runs. Until it has seen one, it takes the larger of the configured estimate and the
start-up time replicas report of themselves (`startup_s`: only the part inside the replica
process, so a floor).
"""

from __future__ import annotations

from collections import deque


class ColdStart:
    def __init__(self, configured_s: float, memory: int = 8) -> None:
        self.configured_s = configured_s
        self._asked: deque[float] = deque()  # when each replica not yet running was asked for
        self._seen: deque[float] = deque(maxlen=memory)  # measured cold starts, newest last
        self._running: int | None = None
        self._reported = 0.0

    def observe(self, now: float, target: int, running: int, reported_startup_s: float) -> None:
        """Serve's target and running replicas at this tick."""
        self._reported = max(self._reported, reported_startup_s)
        if self._running is not None:
            for _ in range(max(0, running - self._running)):
                if self._asked:
                    self._seen.append(now - self._asked.popleft())
        self._running = running
        waiting = max(0, target - running)
        while len(self._asked) > waiting:  # scaled back before they came up
            self._asked.pop()
        while len(self._asked) < waiting:
            self._asked.append(now)

    @property
    def estimate_s(self) -> float:
        if self._seen:
            return sum(self._seen) / len(self._seen)
        return max(self.configured_s, self._reported)

    @property
    def measured(self) -> bool:
        return bool(self._seen)
