"""Aggregate metrics over a run's records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest.record import NOT_SENT, RequestRecord
from loadtest.slo import Slo

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class LatencyStats:
    """Mean and percentiles (linear interpolation) of one latency, in seconds."""

    count: int
    mean: float | None
    percentiles: dict[str, float | None]

    @classmethod
    def of(cls, samples: Sequence[float], percentiles: Sequence[float]) -> LatencyStats:
        if not samples:
            return cls(0, None, {_label(p): None for p in percentiles})
        values = np.asarray(samples, dtype=np.float64)
        return cls(len(values), float(values.mean()),
                   {_label(p): float(np.percentile(values, p)) for p in percentiles})

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, **self.percentiles, "count": self.count}


@dataclass(frozen=True)
class Summary:
    """What a run achieved. Rates divide by `duration_s`: from the first request sent to the
    last response ended."""

    requests_scheduled: int
    requests_completed: int
    requests_failed: int
    requests_not_sent: int
    errors_by_kind: dict[str, int]
    duration_s: float
    requests_per_s: float
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    input_tokens_per_s: float
    output_tokens_per_s: float
    goodput_rps: float
    slo_attainment: float | None
    ttft_s: LatencyStats
    ttfat_s: LatencyStats
    tpot_s: LatencyStats
    itl_s: LatencyStats
    e2e_s: LatencyStats
    client_queue_s: LatencyStats
    #: Server-reported cached prompt tokens over prompt tokens, for requests that reported both.
    cache_hit_rate: float | None
    #: Server prompt tokens over our estimate: how good the ~1 token/word approximation was.
    prompt_tokens_ratio: float | None
    token_sources: dict[str, int]
    offered_load: float | None = None
    slo: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.to_json() if isinstance(value, LatencyStats) else value
        return out


def summarize(records: Iterable[RequestRecord], slo: Slo | None = None,
              percentiles: Sequence[float] = DEFAULT_PERCENTILES,
              offered_load: float | None = None) -> Summary:
    """Aggregate `records` (from one worker or merged from many: everything is computed from
    the raw per-request samples, so merging is exact)."""
    records = list(records)
    slo = slo or Slo()
    sent = [r for r in records if r.error_kind != NOT_SENT]
    done = [r for r in sent if r.ok]
    duration = (max(r.end_s for r in sent) - min(r.sent_s for r in sent)) if sent else 0.0

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    def stats(values: Iterable[float | None]) -> LatencyStats:
        return LatencyStats.of([v for v in values if v is not None], percentiles)

    input_tokens = sum(_prompt_tokens(r) for r in done)
    output_tokens = sum(r.output_tokens for r in done)
    good = sum(slo.meets(r) for r in done)
    return Summary(
        requests_scheduled=len(records),
        requests_completed=len(done),
        requests_failed=len(sent) - len(done),
        requests_not_sent=len(records) - len(sent),
        errors_by_kind=dict(Counter(r.error_kind for r in records if r.error_kind)),
        duration_s=duration,
        requests_per_s=rate(len(done)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=sum(r.reasoning_tokens or 0 for r in done),
        answer_tokens=sum(r.answer_tokens for r in done),
        input_tokens_per_s=rate(input_tokens),
        output_tokens_per_s=rate(output_tokens),
        goodput_rps=rate(good),
        slo_attainment=good / len(sent) if sent else None,
        ttft_s=stats(r.ttft_s for r in done),
        ttfat_s=stats(r.ttfat_s for r in done),
        tpot_s=stats(r.tpot_s for r in done),
        itl_s=stats(itl for r in done for itl in r.itls_s),
        e2e_s=stats(r.e2e_s for r in done),
        client_queue_s=stats(r.client_queue_s for r in sent),
        cache_hit_rate=_cache_hit_rate(done),
        prompt_tokens_ratio=_prompt_ratio(done),
        token_sources=dict(Counter(r.token_source for r in done)),
        offered_load=offered_load,
        slo={k: v for k, v in slo.__dict__.items()},
    )


def _label(p: float) -> str:
    return f"p{p:g}"


def _prompt_tokens(r: RequestRecord) -> int:
    if r.prompt_tokens is not None:
        return r.prompt_tokens
    return r.expected_prompt_tokens or 0


def _cache_hit_rate(done: list[RequestRecord]) -> float | None:
    known = [r for r in done if r.cached_tokens is not None and r.prompt_tokens]
    if not known:
        return None
    return sum(r.cached_tokens or 0 for r in known) / sum(r.prompt_tokens or 0 for r in known)


def _prompt_ratio(done: list[RequestRecord]) -> float | None:
    pairs = [(r.prompt_tokens, r.expected_prompt_tokens) for r in done
             if r.prompt_tokens is not None and r.expected_prompt_tokens]
    if not pairs:
        return None
    return sum(p for p, _ in pairs) / sum(e for _, e in pairs if e)
