"""`LoadMeter`: rates over their windows, TTFT percentiles, and decode work expected and
bounded, as every replica (live or modelled) reports them."""

from __future__ import annotations

import pytest

from serve.engine.load_meter import LoadMeter, StreamState
from serve.engine.output_length import OutputLengthEstimator

KV = {"kv_pages_used": 0, "kv_pages_total": 100, "page_size": 16, "max_running": 8}


def test_arrival_rates_count_the_last_minute_only():
    meter = LoadMeter(now=0.0)
    for t in range(10):
        meter.arrived(float(t), prompt_tokens=1000, max_tokens=4096)
    s = meter.snapshot(10.0, [], **KV)
    assert s.arrival_requests_per_s == pytest.approx(1.0)  # 10 over the 10 s it has been up
    assert s.arrival_prompt_tokens_per_s == pytest.approx(1000.0)
    assert s.arrival_decode_tokens_per_s == pytest.approx(
        meter.lengths.expected_total(4096))
    assert meter.snapshot(30.0, [], **KV).arrival_requests_per_s == pytest.approx(10 / 30)
    assert meter.snapshot(75.0, [], **KV).arrival_requests_per_s == 0.0


def test_a_steady_decode_rate_reads_as_itself_at_any_moment():
    meter = LoadMeter(now=0.0)
    t = 0.0
    while t < 30.4 - 1e-9:  # 0.4 s steps, each decoding 8 tokens: 20 tokens/s
        t += 0.4
        meter.worked(t, busy_s=0.4, step_s=0.05, prefill_tokens=0, decode_tokens=8)
    s = meter.snapshot(t, [], **KV)
    assert s.generation_tokens_per_s == pytest.approx(20.0)
    assert s.itl_mean_s == pytest.approx(0.05)


def test_work_over_an_interval_is_spread_over_the_seconds_it_covers():
    meter = LoadMeter(now=0.0)
    meter.worked(12.0, busy_s=4.0, step_s=0.1, prefill_tokens=0, decode_tokens=400)
    assert meter.snapshot(12.0, [], **KV).generation_tokens_per_s == pytest.approx(40.0)
    # 10 s later only [10, 12] of it is inside the 10 s window: 200 tokens; half a second
    # later, [10.5, 12]: 150.
    assert meter.snapshot(20.0, [], **KV).generation_tokens_per_s == pytest.approx(20.0)
    assert meter.snapshot(20.5, [], **KV).generation_tokens_per_s == pytest.approx(15.0)
    assert meter.snapshot(23.0, [], **KV).generation_tokens_per_s == 0.0
    # An interval longer than the window counts for the part inside it.
    meter.worked(60.0, busy_s=30.0, step_s=0.1, prefill_tokens=0, decode_tokens=3000)
    assert meter.snapshot(60.0, [], **KV).generation_tokens_per_s == pytest.approx(100.0)


def test_prefill_speed_and_capacity():
    meter = LoadMeter(now=0.0)
    # 2 s of steps that prefilled 8000 tokens (and decoded beside them), then 8 s of decode.
    meter.worked(2.0, busy_s=2.0, step_s=0.5, prefill_tokens=8000, decode_tokens=4)
    meter.worked(10.0, busy_s=8.0, step_s=0.05, prefill_tokens=0, decode_tokens=160)
    s = meter.snapshot(10.0, [], **KV)
    assert s.prefill_tokens_per_s == pytest.approx(800.0)  # over the 10 s it has been up
    assert s.prefill_capacity_tokens_per_s == pytest.approx(4000.0)  # per second prefilling
    assert s.itl_mean_s == pytest.approx((4 * 0.5 + 160 * 0.05) / 164)
    assert LoadMeter(now=0.0).snapshot(5.0, [], **KV).prefill_capacity_tokens_per_s is None


def test_ttft_percentiles_cover_the_last_minute():
    meter = LoadMeter(now=0.0)
    assert meter.snapshot(0.0, [], **KV).ttft_p90_s is None
    for i in range(1, 101):  # TTFTs of 0.01 .. 1.00 s, the largest last
        meter.first_token(100.0 + i * 0.1, i / 100)
    s = meter.snapshot(111.0, [], **KV)
    assert (s.ttft_p90_s, s.ttft_p99_s) == (0.91, 1.0)
    s = meter.snapshot(165.05, [], **KV)  # only those after 105.05 s are left: 0.51 .. 1.00
    assert (s.ttft_p90_s, s.ttft_p99_s) == (0.96, 1.0)
    s = meter.snapshot(200.0, [], **KV)
    assert (s.ttft_p90_s, s.ttft_p99_s) == (None, None)


def test_decode_work_expected_from_the_lengths_and_bounded_by_max_tokens():
    lengths = OutputLengthEstimator()
    for _ in range(5000):
        lengths.observe(512)
    meter = LoadMeter(lengths, now=0.0)
    streams = [StreamState(100, 0, 300, 32768, True),  # running, 300 tokens generated
               StreamState(100, 1, 10, 20, True),  # about to hit its max_tokens
               StreamState(5000, 5000, 0, 32768, False)]  # waiting
    s = meter.snapshot(1.0, streams, **KV)
    assert s.decode_bound_tokens == (32768 - 300) + (20 - 10) + 32768
    assert s.longest_decode_bound_tokens == 32768
    assert s.expected_remaining_decode_tokens == round(
        lengths.expected_remaining(300, 32768) + lengths.expected_remaining(10, 20)
        + lengths.expected_total(32768))
    assert s.expected_remaining_decode_tokens < 1000  # these requests answer in ~512 tokens
    assert (s.running, s.waiting, s.queued_prefill_tokens) == (2, 1, 5000)


def test_only_natural_ends_and_the_max_tokens_cap_teach_lengths():
    meter = LoadMeter(now=0.0)
    meter.finished(100, "abort")
    meter.finished(100, "error")
    meter.finished(0, "stop")  # nothing generated: nothing to learn
    assert meter.lengths.observations == 0
    meter.finished(100, "stop")
    meter.finished(4096, "length")
    assert meter.lengths.observations == 2


def test_prefix_hits_accumulate():
    meter = LoadMeter(now=0.0)
    meter.prefix_matched(1000, 768)
    meter.prefix_matched(500, 0)
    s = meter.snapshot(1.0, [], **KV)
    assert (s.prompt_tokens, s.prefix_cache_hit_tokens) == (1500, 768)
