"""`Admission`: a bound on requests in flight. Past it a request is refused at once with 429
and `Retry-After`, rather than queued where its client cannot see how long it will wait."""

from __future__ import annotations

from collections.abc import Callable

from serve.api.http_errors import OverloadedError


class Admission:
    """Counts admitted requests; one event loop touches it, so it needs no lock."""

    def __init__(self, max_in_flight: int, retry_after_s: int = 1) -> None:
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    def enter(self) -> Callable[[], None]:
        """Admit one request and return its release (idempotent), or raise `OverloadedError`."""
        if self.in_flight >= self.max_in_flight:
            raise OverloadedError(
                f"the server is at its limit of {self.max_in_flight} requests in flight; "
                f"retry after {self.retry_after_s}s (operators: raise max_in_flight or add "
                "replicas)", retry_after_s=self.retry_after_s)
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        return release
