"""Aggregation: goodput against SLOs, percentiles, rates, cache hit rate."""

from __future__ import annotations

import pytest

from loadtest.record import NOT_SENT, RequestRecord
from loadtest.slo import Slo
from loadtest.summary import summarize


def rec(i: int, ttft: float, gap: float, n: int, *, error: str | None = None,
        cached: int | None = None, answer_at: int | None = None) -> RequestRecord:
    sent = float(i)
    chunks = tuple(sent + ttft + gap * k for k in range(n))
    first_answer = chunks[answer_at] if answer_at is not None else None
    return RequestRecord(request_id=f"r{i}", session_id=f"r{i}", worker=0, due_s=sent - 0.001,
                         sent_s=sent, end_s=chunks[-1] if chunks else sent, max_tokens=n,
                         chunk_times_s=chunks, first_answer_s=first_answer,
                         prompt_tokens=100, completion_tokens=n, reasoning_tokens=n // 2,
                         cached_tokens=cached, token_source="usage", error_kind=error,
                         expected_prompt_tokens=80)


def test_goodput_counts_only_requests_within_every_bound() -> None:
    records = [rec(0, 0.1, 0.01, 11, answer_at=5),   # ttft .1, tpot .01, e2e .2
               rec(1, 0.5, 0.01, 11, answer_at=5),   # ttft too slow
               rec(2, 0.1, 0.05, 11, answer_at=5),   # tpot too slow
               rec(3, 0.1, 0.01, 11, error="http_500"),
               rec(4, 0.15, 0.015, 11)]              # never answered: fails a TTFAT bound only
    s = summarize(records, Slo(ttft_s=0.2, tpot_s=0.02))
    assert s.requests_completed == 4 and s.requests_failed == 1
    duration = records[-1].end_s - records[0].sent_s
    assert s.duration_s == pytest.approx(duration)
    assert s.goodput_rps == pytest.approx(2 / duration)
    assert s.slo_attainment == pytest.approx(2 / 5)
    with_ttfat = summarize(records, Slo(ttft_s=0.2, tpot_s=0.02, ttfat_s=1.0))
    assert with_ttfat.goodput_rps == pytest.approx(1 / duration)
    assert s.errors_by_kind == {"http_500": 1}


def test_latency_percentiles_come_from_raw_samples() -> None:
    records = [rec(i, 0.01 * (i + 1), 0.01, 3) for i in range(100)]
    s = summarize(records, percentiles=(50, 90, 99))
    assert s.ttft_s.mean == pytest.approx(0.505)
    assert s.ttft_s.percentiles["p50"] == pytest.approx(0.505)
    assert s.ttft_s.percentiles["p99"] == pytest.approx(0.9901)
    assert s.itl_s.count == 200 and s.itl_s.mean == pytest.approx(0.01)
    assert s.tpot_s.percentiles["p90"] == pytest.approx(0.01)
    assert s.client_queue_s.mean == pytest.approx(0.001)
    assert set(s.to_json()["ttft_s"]) == {"mean", "p50", "p90", "p99", "count"}


def test_tokens_rates_cache_hits_and_prompt_estimate() -> None:
    records = [rec(0, 0.1, 0.1, 10, cached=50), rec(1, 0.1, 0.1, 10, cached=0),
               rec(2, 0.1, 0.1, 10, error=NOT_SENT)]
    s = summarize(records)
    assert s.requests_not_sent == 1 and s.requests_failed == 0
    assert s.input_tokens == 200 and s.output_tokens == 20
    assert s.reasoning_tokens == 10 and s.answer_tokens == 10
    assert s.output_tokens_per_s == pytest.approx(20 / s.duration_s)
    assert s.cache_hit_rate == pytest.approx(50 / 200)
    assert s.prompt_tokens_ratio == pytest.approx(100 / 80)
