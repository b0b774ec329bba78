"""`OutputLengthEstimator`: the learnt output-length distribution engines and routers share."""

from __future__ import annotations

import random

import pytest

from serve.engine import output_length
from serve.engine.output_length import LengthPrior, OutputLengthEstimator


def _direct(est: OutputLengthEstimator, generated: int, max_tokens: int) -> float:
    """E[min(L, max_tokens) - generated | L > generated], summed bin by bin."""
    pairs = [(c, w) for c, w in zip(output_length._CENTERS, est._weights, strict=True)
             if c > generated]
    num = sum(w * (min(c, max_tokens) - generated) for c, w in pairs)
    return max(1.0, num / sum(w for _, w in pairs))


def test_the_binary_search_answer_is_the_sum_over_bins():
    est = OutputLengthEstimator()
    rng = random.Random(3)
    for _ in range(500):
        est.observe(int(rng.lognormvariate(7.0, 1.2)) + 1)
    for generated, max_tokens in [(0, 32768), (0, 100), (700, 4096), (3000, 3001),
                                  (5000, 65536), (90, 91), (1, 2), (20000, 32768)]:
        assert est.expected_remaining(generated, max_tokens) == pytest.approx(
            _direct(est, generated, max_tokens), rel=1e-9), (generated, max_tokens)
    assert est.expected_total(4096) == est.expected_remaining(0, 4096)
    assert est.expected_remaining(4096, 4096) == 0.0


def test_a_long_running_stream_of_a_heavy_tail_has_more_left_than_a_fresh_one():
    est = OutputLengthEstimator(LengthPrior(median_tokens=256, sigma=0.1, weight=1.0))
    for i in range(1000):  # nine in ten answer in 256 tokens; one in ten reasons for 16K
        est.observe(16384 if i % 10 == 0 else 256)
    fresh = est.expected_remaining(0, 32768)
    assert fresh == pytest.approx(0.9 * 256 + 0.1 * 16384, rel=0.05)
    # Past the short answers, a stream is one of the long ones: most of 16K is still to come.
    assert est.expected_remaining(1000, 32768) == pytest.approx(16384 - 1000, rel=0.01)
    # The R1 prior alone is heavy-tailed too: the further a stream has run, the more is left.
    r1 = OutputLengthEstimator()
    left = [r1.expected_remaining(g, 32768) for g in (3000, 8000, 16000)]
    assert left == sorted(left) and left[-1] > r1.expected_remaining(0, 32768)


def test_a_shift_in_lengths_is_learnt_and_the_old_ones_forgotten():
    est = OutputLengthEstimator()  # half-life: 2000 requests
    for _ in range(4000):
        est.observe(512)
    assert est.expected_total(32768) == pytest.approx(512, rel=0.02)  # the prior is forgotten
    for _ in range(2000):
        est.observe(8192)
    halfway = est.expected_total(32768)
    assert 512 + (8192 - 512) * 0.4 < halfway < 512 + (8192 - 512) * 0.6  # one half-life
    for _ in range(18000):
        est.observe(8192)
    assert est.expected_total(32768) == pytest.approx(8192, rel=0.002)
    assert est.expected_total(4000) == pytest.approx(4000, rel=0.002)  # capped by max_tokens


def test_kv_token_steps_are_the_prompt_and_the_growing_output_held_at_each_step():
    """A request of prompt p that decodes L tokens holds p + k tokens at its k-th step:
    p L + L (L + 1) / 2 token-steps, in expectation over the learnt lengths (capped)."""
    est = OutputLengthEstimator(LengthPrior(median_tokens=256, sigma=0.1, weight=1e-9))
    for i in range(4000):  # half 256, half 4096 tokens (both exact bin centres); the decay
        est.observe(256 if i % 2 else 4096)  # weighs the last a hair more: within 0.2%
    expected = 0.5 * (1000 * 256 + 256 * 257 / 2) + 0.5 * (1000 * 4096 + 4096 * 4097 / 2)
    assert est.expected_kv_steps(1000, 32768) == pytest.approx(expected, rel=2e-3)
    capped = 0.5 * (1000 * 256 + 256 * 257 / 2) + 0.5 * (1000 * 2048 + 2048 * 2049 / 2)
    assert est.expected_kv_steps(1000, 2048) == pytest.approx(capped, rel=2e-3)
