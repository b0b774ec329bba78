"""The arrival forecast: trend one horizon ahead, spread about the trend."""

from __future__ import annotations

import random

from serve.autoscaling.load_forecast import LoadForecast


def test_a_linear_ramp_is_read_at_the_horizon():
    f = LoadForecast(trend_window_s=900, burst_window_s=3600, sample_s=10)
    for i in range(200):
        f.add(1.7e9 + 10 * i, 1000.0 + 2.0 * (10 * i))  # +2 tokens/s every second
    now = 1.7e9 + 1990
    at = f.at(now, horizon_s=300)
    assert abs(at.level - 4980) < 1e-6 and abs(at.ahead - 5580) < 1e-6
    assert at.spread < 1e-9  # a line has no spread about itself


def test_the_spread_is_the_noise_about_the_trend_not_the_trend():
    rng = random.Random(0)
    f = LoadForecast(trend_window_s=900, burst_window_s=3600, sample_s=10)
    for i in range(360):
        f.add(10.0 * i, 2000.0 + 0.5 * 10 * i + rng.gauss(0, 100))
    at = f.at(3590.0, 300)
    assert 0.8 < at.spread * at.level / 100 < 1.2


def test_samples_closer_than_the_period_are_one():
    f = LoadForecast(900, 3600, sample_s=10)
    f.add(0.0, 100.0)
    f.add(5.0, 10_000.0)  # Serve asks again half a period later: not a new sample
    assert f.at(5.0, 300).level == 100.0


def test_a_falling_trend_never_forecasts_below_zero():
    f = LoadForecast(900, 3600, sample_s=10)
    for i in range(60):
        f.add(10.0 * i, max(0.0, 600.0 - 10.0 * 10 * i))
    assert f.at(590.0, 3000).ahead == 0.0
