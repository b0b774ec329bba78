"""The arrival forecast: the trend one horizon ahead, and its own errors as burstiness."""

from __future__ import annotations

import math
import random

from serve.autoscaling.load_forecast import Arrivals, LoadForecast


def test_a_linear_ramp_is_read_at_the_horizon_and_forecast_without_error():
    f = LoadForecast(trend_window_s=900, burst_window_s=3600, sample_s=10)
    t0 = 1.7e9  # wall-clock times, as Serve gives them
    for i in range(200):  # requests at 1, 1.002, 1.004 ... per second, 1,000 tokens each
        rate = 1.0 + 0.0002 * (10 * i)
        at = f.update(t0 + 10 * i, Arrivals(rate, 1000.0 * rate), horizon_s=300)
    assert math.isclose(at.level, 1398.0) and math.isclose(at.ahead, 1458.0)
    assert at.spread < 1e-9  # every forecast of a straight line came true


def test_bursts_the_trend_cannot_see_coming_make_the_spread():
    rng = random.Random(0)
    smooth = LoadForecast(900, 3600, sample_s=10)
    bursty = LoadForecast(900, 3600, sample_s=10)
    for i in range(720):
        t = 10.0 * i
        base = 2.0 + 0.0002 * t + rng.gauss(0, 0.05)
        smooth.update(t, Arrivals(base, 1000.0 * base), 300)
        burst = 1.6 if int(t // 1200) % 2 and t % 1200 < 300 else 1.0  # 5 min of every 40
        last = bursty.update(t, Arrivals(base * burst, 1000.0 * base * burst), 300)
    quiet = smooth.latest
    assert quiet.spread < 0.03  # measurement noise the 15-minute fit averages away
    assert last.spread > 3 * quiet.spread


def test_samples_closer_than_the_period_are_one():
    f = LoadForecast(900, 3600, sample_s=10)
    f.update(0.0, Arrivals(1.0, 100.0), 300)
    # Serve asks again half a period on: not a new sample
    assert f.update(5.0, Arrivals(100.0, 10_000.0), 300).level == 100.0


def test_a_falling_trend_never_forecasts_below_zero():
    f = LoadForecast(900, 3600, sample_s=10)
    for i in range(60):
        rate = max(0.0, 6.0 - 0.1 * 10 * i)
        at = f.update(10.0 * i, Arrivals(rate, 100.0 * rate), 3000)
    assert at.ahead == 0.0 and at.growth() == 1.0  # nothing now, nothing ahead


def test_the_load_is_the_request_trend_times_the_mean_request_in_tokens():
    f = LoadForecast(900, 3600, sample_s=10)
    rng = random.Random(1)
    for i in range(360):  # two requests a second; their tokens swing wildly minute to minute
        size = rng.choice([1_000.0, 30_000.0])
        at = f.update(10.0 * i, Arrivals(2.0, 2.0 * size, 2.0 * size * 100), 300)
    mean = sum(a.tokens for _, a in f._sizes) / sum(a.requests for _, a in f._sizes)
    assert math.isclose(at.level, 2.0 * mean) and at.spread < 1e-9
    assert math.isclose(at.kv_token_steps, 100 * at.level)
