"""What the router believes of one replica: its intake rate."""

from __future__ import annotations

import math

import pytest

from serve.routing.replica_view import ReplicaView


def test_the_intake_rate_is_true_before_the_horizon_has_filled():
    """10 tokens a second for 100 s, horizon 600 s: the decayed sum holds ~920 tokens, a
    sixth of what a full horizon would; the rate divides it by the decayed window so far."""
    view = ReplicaView("a")
    assert view.intake_rate(0.0, 600.0) == 0.0  # nothing sent yet
    for t in range(100):
        view.take_in(10.0, float(t), 600.0)
    assert view.intake(100.0, 600.0) < 1000.0
    assert view.intake_rate(100.0, 600.0) == pytest.approx(10.0, rel=0.01)
    for t in range(100, 3000):  # long after the horizon has filled
        view.take_in(10.0, float(t), 600.0)
    assert view.intake_rate(3000.0, 600.0) == pytest.approx(10.0, rel=0.01)
    assert view.intake_rate(3600.0, 600.0) == pytest.approx(10.0 / math.e, rel=0.02)
