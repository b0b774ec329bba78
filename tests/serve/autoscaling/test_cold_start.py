"""The cold start the policy plans with: configured, reported, then measured."""

from __future__ import annotations

from serve.autoscaling.cold_start import ColdStart


def test_configured_until_measured_and_never_below_what_replicas_report():
    c = ColdStart(configured_s=300.0)
    c.observe(0.0, target=2, running=2, reported_startup_s=420.0)
    assert c.estimate_s == 420.0 and not c.measured


def test_measured_from_the_tick_the_target_rose_to_the_tick_a_replica_serves():
    c = ColdStart(configured_s=300.0)
    c.observe(0.0, target=2, running=2, reported_startup_s=100.0)
    c.observe(10.0, target=4, running=2, reported_startup_s=100.0)  # asked for two more
    c.observe(200.0, target=4, running=3, reported_startup_s=100.0)
    assert c.measured and c.estimate_s == 190.0
    c.observe(260.0, target=4, running=4, reported_startup_s=100.0)
    assert c.estimate_s == 220.0  # the mean of 190 and 250


def test_a_replica_scaled_back_before_it_served_is_not_counted():
    c = ColdStart(configured_s=300.0)
    c.observe(0.0, target=3, running=2, reported_startup_s=0.0)
    c.observe(50.0, target=2, running=2, reported_startup_s=0.0)
    c.observe(900.0, target=2, running=2, reported_startup_s=0.0)
    assert not c.measured
