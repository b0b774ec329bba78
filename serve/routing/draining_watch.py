"""`DrainingWatch`: keeps the router's set of draining replicas current from the autoscaler.

The token-load policy names the replica it is about to remove on the `ScalingBoard` (Ray's GCS)
so that routers stop sending it new requests and its streams run down before Serve stops it.
Reading the board is a blocking remote call, so it never happens while a request is routed: a
background task started on the router's event loop reads it in a thread every period and
hands the set to the router core. A failed read is logged once and keeps the set it had. A
decision the policy has not renewed for `STALE_S` drains nothing: the policy posts every few
seconds while it runs, so an old one is left from a policy that no longer runs (the app
redeployed with another policy, say), and its replica must not stay shunned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.scaling_board import STALE_S

log = logging.getLogger(__name__)


class DrainingWatch:
    """Calls `read` (a `ScalingBoard.read`) every `period_s` and `apply` with the replica ids
    being drained."""

    def __init__(self, read: Callable[[], ScalingDecision | None],
                 apply: Callable[[Iterable[str]], None], period_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.read = read
        self.apply = apply
        self.period_s = period_s
        self._clock = clock  # the policy stamps decisions with the controller's wall time
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def ensure_running(self) -> None:
        """Start the refresh on the running event loop unless it runs already; cheap enough to
        call on every routing decision (the router has no start hook of its own)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def refresh(self) -> None:
        """Read the board once and apply what it says; keep the set on a failed read."""
        try:
            decision = await asyncio.to_thread(self.read)
        except Exception:
            if not self._failing:
                log.warning("could not read the scaling decision; routing keeps the draining "
                            "replicas it knew", exc_info=True)
            self._failing = True
            return
        if self._failing:
            log.info("reading the scaling decision again")
        self._failing = False
        fresh = decision is not None and self._clock() - decision.at <= STALE_S
        self.apply(decision.draining if fresh else ())

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.period_s)
