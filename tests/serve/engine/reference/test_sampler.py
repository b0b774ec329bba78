"""The sampler: greedy, seeded reproducibility, filters, frequencies and logprobs."""

from __future__ import annotations

import pytest
import torch

from serve.engine.base import SamplingParams
from serve.engine.reference.sampler import sample

VOCAB = 4096


def _logits(batch: int, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=g) * 3.0


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _draws(logits: torch.Tensor, params: SamplingParams, n: int, seed: int = 0) -> list[int]:
    gen = _gen(seed)
    return [sample(logits, [params], [gen]).token_ids[0] for _ in range(n)]


def test_greedy_is_argmax_for_every_row() -> None:
    logits = _logits(5)
    out = sample(logits, [SamplingParams(temperature=0.0)] * 5, [None] * 5)
    assert out.token_ids == logits.argmax(dim=-1).tolist()
    assert out.logprobs == [None] * 5


def test_greedy_rows_mixed_with_sampled_rows_stay_argmax() -> None:
    logits = _logits(4)
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)] * 2
    out = sample(logits, params, [None] * 4)
    argmax = logits.argmax(dim=-1).tolist()
    assert out.token_ids[0] == argmax[0] and out.token_ids[2] == argmax[2]


@pytest.mark.parametrize(("vocab", "steps"), [(VOCAB, 20), (129_280, 3)])
def test_same_seed_gives_same_tokens_alone_or_in_any_batch(vocab: int, steps: int) -> None:
    logits = _logits(6, vocab, seed=1)
    seeded = SamplingParams(temperature=0.9, top_k=50, top_p=0.9, min_p=0.01, seed=7)

    alone_gen = _gen(7)
    alone = [sample(logits[2:3], [seeded], [alone_gen]).token_ids[0] for _ in range(steps)]

    # The same row inside a batch with greedy, unseeded and differently seeded rows whose
    # filters differ (so batched filter passes include rows that disable them).
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=1.3),
        seeded,
        SamplingParams(temperature=0.7, top_k=5, seed=3),
        SamplingParams(temperature=1.0, top_p=0.5, logprobs=True, top_logprobs=3),
        SamplingParams(temperature=1.0, min_p=0.2, seed=11),
    ]
    batch_gen = _gen(7)
    gens = [None, None, batch_gen, _gen(3), None, _gen(11)]
    batched = [sample(logits, params, gens).token_ids[2] for _ in range(steps)]
    assert batched == alone
    if steps > 5:
        assert len(set(alone)) > 1  # the row really samples; this is not greedy by accident


def test_top_k_one_equals_greedy() -> None:
    logits = _logits(3)
    params = [SamplingParams(temperature=1.5, top_k=1)] * 3
    for _ in range(10):
        assert sample(logits, params, [None] * 3).token_ids == logits.argmax(dim=-1).tolist()


def test_tiny_top_p_equals_greedy() -> None:
    logits = _logits(3)
    params = [SamplingParams(temperature=1.5, top_p=1e-6)] * 3
    for _ in range(10):
        assert sample(logits, params, [None] * 3).token_ids == logits.argmax(dim=-1).tolist()


def test_top_k_keeps_only_the_k_most_likely() -> None:
    logits = _logits(1, seed=2)
    allowed = set(logits[0].topk(3).indices.tolist())
    drawn = set(_draws(logits, SamplingParams(temperature=5.0, top_k=3), 200))
    assert drawn <= allowed and len(drawn) > 1


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    # Probabilities 0.5, 0.3, 0.15, 0.05: 0.75 is reached by the first two; 0.81 needs a third.
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert set(_draws(logits, SamplingParams(top_p=0.75), 300)) == {0, 1}
    assert set(_draws(logits, SamplingParams(top_p=0.81), 300)) == {0, 1, 2}


def test_min_p_drops_tokens_below_fraction_of_max() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # 0.5 * 0.35 = 0.175: only tokens 0 and 1 survive.
    assert set(_draws(logits, SamplingParams(min_p=0.35), 300)) == {0, 1}
    assert set(_draws(logits, SamplingParams(min_p=0.0), 300)) == {0, 1, 2, 3}


def test_frequencies_match_softmax_with_temperature() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    temperature, n = 0.8, 20_000
    params = [SamplingParams(temperature=temperature)] * n
    # Many unseeded rows in one call: the batched draw from the shared default generator.
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        tokens = sample(logits.expand(n, -1).contiguous(), params, [None] * n).token_ids
    counts = torch.bincount(torch.tensor(tokens), minlength=5).double() / n
    expected = (logits[0] / temperature).softmax(-1).double()
    assert torch.allclose(counts, expected, atol=0.02)


def test_seeded_frequencies_match_softmax() -> None:
    logits = torch.tensor([[1.0, 0.0, -0.5]])
    tokens = _draws(logits, SamplingParams(temperature=1.0), 3000, seed=99)
    counts = torch.bincount(torch.tensor(tokens), minlength=3).double() / len(tokens)
    assert torch.allclose(counts, logits[0].softmax(-1).double(), atol=0.04)


def test_logprobs_come_from_raw_logits_and_top_is_sorted() -> None:
    logits = _logits(3, seed=5)
    params = [
        SamplingParams(temperature=0.5, top_k=10, logprobs=True, top_logprobs=5),
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=0.0, logprobs=True),
    ]
    out = sample(logits, params, [_gen(0), None, None])
    raw = logits.log_softmax(dim=-1)
    assert out.logprobs[1] is None
    for row in (0, 2):
        lp = out.logprobs[row]
        assert lp is not None and lp.token_id == out.token_ids[row]
        assert lp.logprob == pytest.approx(raw[row, lp.token_id].item(), abs=1e-5)
    top = out.logprobs[0].top
    assert len(top) == 5
    assert [t for t, _ in top] == raw[0].topk(5).indices.tolist()
    values = [v for _, v in top]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(raw[0].max().item(), abs=1e-5)
    assert out.logprobs[2].top == ()


def test_empty_batch() -> None:
    out = sample(torch.empty(0, VOCAB), [], [])
    assert out.token_ids == [] and out.logprobs == []


def test_top_p_nucleus_wider_than_the_candidate_window() -> None:
    # A nearly flat distribution whose nucleus holds thousands of tokens: the cut must come from
    # the whole vocabulary, not from the first candidates looked at.
    vocab, top_p = 6000, 0.5
    logits = (-torch.arange(vocab, dtype=torch.float32) * 1e-4).unsqueeze(0)
    probs = logits[0].double().softmax(-1)
    cutoff = int(((probs.cumsum(-1) - probs) < top_p).sum())  # tokens in the nucleus
    drawn = _draws(logits, SamplingParams(top_p=top_p), 300, seed=4)
    assert max(drawn) < cutoff + 2
    assert max(drawn) > cutoff * 0.8  # the far end of the nucleus is reachable


def test_sampled_token_always_has_nonzero_probability_after_filters() -> None:
    logits = _logits(8, seed=9)
    params = [SamplingParams(temperature=2.0, top_k=7, top_p=0.6, min_p=0.1)] * 8
    allowed = logits.topk(7, dim=-1).indices.tolist()
    for _ in range(30):
        tokens = sample(logits, params, [None] * 8).token_ids
        assert all(t in allowed[row] for row, t in enumerate(tokens))
