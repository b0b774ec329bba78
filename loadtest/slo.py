"""Service-level objectives a request must meet to count towards goodput."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.record import RequestRecord


@dataclass(frozen=True)
class Slo:
    """Upper bounds in seconds; None means no bound. A request is good when it succeeded and
    meets every bound that is set (a bound equal to the value passes)."""

    ttft_s: float | None = None
    ttfat_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.ttfat_s, self.tpot_s, self.e2e_s))

    def meets(self, record: RequestRecord) -> bool:
        """Whether `record` succeeded within every bound."""
        if not record.ok:
            return False
        checks = (
            (self.ttft_s, record.ttft_s),
            # A request that never reached its answer misses an answer-latency bound.
            (self.ttfat_s, record.ttfat_s),
            # One output token has no per-token time: it cannot miss a TPOT bound.
            (self.tpot_s, record.tpot_s if record.tpot_s is not None else 0.0),
            (self.e2e_s, record.e2e_s),
        )
        return all(bound is None or (value is not None and value <= bound)
                   for bound, value in checks)
