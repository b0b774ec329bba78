"""Reuse intervals of routed prefixes, on hand-made block hash chains."""

from __future__ import annotations

import pytest

from serve.routing.reuse_intervals import ReuseIntervals

PAGE = 16


def test_an_interval_is_the_time_since_the_longest_seen_prefix_was_last_routed():
    r = ReuseIntervals(min_samples=1, span_tokens=PAGE)
    r.observe((1, 2, 3, 4), PAGE, now=0.0)
    assert r.share_within(1e9) is None  # nothing reused yet
    r.observe((1, 2, 3, 9), PAGE, now=100.0)  # three blocks come back after 100 s
    r.observe((1, 2, 3, 4, 5), PAGE, now=400.0)  # four blocks: block 4 last routed at 0
    assert r.share_within(50.0) == 0.0
    assert r.share_within(200.0) == pytest.approx(3 / 7)
    assert r.share_within(500.0) == 1.0


def test_no_share_until_enough_reuse_was_seen():
    r = ReuseIntervals(min_samples=3, span_tokens=PAGE)
    for t in range(3):
        r.observe((1, 2), PAGE, now=float(t))
    assert r.share_within(10.0) is None
    r.observe((1, 2), PAGE, now=3.0)
    assert r.share_within(10.0) == 1.0


def test_a_full_table_forgets_leaves_before_their_root():
    r = ReuseIntervals(max_blocks=3, min_samples=1, span_tokens=PAGE)
    r.observe((1, 2, 3, 4, 5), PAGE, now=0.0)
    r.observe((1, 2, 3, 4, 5), PAGE, now=10.0)  # 1-3 remembered, 4-5 forgotten
    r.observe((6,), PAGE, now=20.0)  # forgets 3, the deepest block left
    r.observe((1, 2, 3), PAGE, now=30.0)
    assert r.share_within(15.0) == pytest.approx(3 / 5)  # 3 blocks after 10 s, 2 after 20
    assert r.share_within(25.0) == 1.0


def test_one_block_in_a_span_stands_for_it():
    """Spans of 4 pages: blocks 4 and 8 are remembered, for 4 pages each; a prompt that
    repeats 7 pages brings back the first span only, and one of 3 pages nothing."""
    r = ReuseIntervals(min_samples=1, span_tokens=4 * PAGE)
    r.observe(tuple(range(1, 11)), PAGE, now=0.0)
    r.observe((1, 2, 3), PAGE, now=5.0)
    assert r.share_within(1e9) is None
    r.observe((1, 2, 3, 4, 5, 6, 7), PAGE, now=10.0)
    r.observe(tuple(range(1, 11)), PAGE, now=30.0)  # 8 pages back: block 8 last seen at 0
    assert r.share_within(5.0) == 0.0
    assert r.share_within(15.0) == pytest.approx(4 / 12)  # 4 pages after 10 s, 8 after 30
    assert r.share_within(45.0) == 1.0
