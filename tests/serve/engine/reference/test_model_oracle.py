"""The reference model against transformers' DeepseekV3ForCausalLM, in fp32, on the tiny
checkpoint: prefill, step-by-step decode through the paged latent cache, and a batch of
prompts of different lengths computed in the same steps."""

from __future__ import annotations

import pytest
import torch

from serve.engine.reference.checkpoint import load_model_args, load_state_dict
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_runner import ModelRunner, StepItem

transformers = pytest.importorskip("transformers")

TOL = 1e-4
PAGE = 8


@pytest.fixture(scope="module")
def models(tiny_fp32_dir):
    args = load_model_args(tiny_fp32_dir)
    ours = Transformer(args)
    ours.load_state_dict(load_state_dict(tiny_fp32_dir, args), strict=True)
    ref = transformers.DeepseekV3ForCausalLM.from_pretrained(tiny_fp32_dir, dtype=torch.float32)
    return ours.eval(), ref.eval()


def _reference_logits(ref, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return ref(torch.tensor([ids])).logits[0].float()


def _prompts(vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (n,), generator=g).tolist() for n in lengths]


def test_prefill_logits_match_transformers(models):
    ours, ref = models
    (ids,) = _prompts(ours.args.vocab_size, [37])
    runner = ModelRunner(ours, num_pages=8, page_size=PAGE)
    # logits at every position: run the prompt as one chunk per position prefix
    expected = _reference_logits(ref, ids)
    got = runner.run([StepItem(ids, 0, list(range(5)))])[0]
    assert torch.allclose(got, expected[-1], atol=TOL, rtol=0), (got - expected[-1]).abs().max()


def test_step_by_step_decode_matches_transformers(models):
    ours, ref = models
    (ids,) = _prompts(ours.args.vocab_size, [45], seed=1)
    expected = _reference_logits(ref, ids)
    runner = ModelRunner(ours, num_pages=8, page_size=PAGE)
    pages = [3, 0, 6, 1, 5, 7]  # scattered pages: the page table, not contiguity, decides
    worst = 0.0
    runner.run([StepItem(ids[:20], 0, pages)])
    for t in range(20, len(ids)):
        got = runner.run([StepItem([ids[t]], t, pages)])[0]
        worst = max(worst, (got - expected[t]).abs().max().item())
    assert worst <= TOL


def test_mixed_batch_of_different_lengths_matches_transformers(models):
    """Three prompts prefilled in one step (chunks of different lengths), then decoded
    together, with a fourth joining mid-way: every row equals its own unbatched reference."""
    ours, ref = models
    lengths = [9, 30, 17, 12]
    prompts = _prompts(ours.args.vocab_size, lengths, seed=2)
    expected = [_reference_logits(ref, p) for p in prompts]
    runner = ModelRunner(ours, num_pages=32, page_size=PAGE)
    tables = [list(range(i * 8, i * 8 + 8)) for i in range(4)]
    prefill = [5, 22, 11]  # first part of each prompt; the rest is decoded token by token
    out = runner.run([StepItem(prompts[i][:prefill[i]], 0, tables[i]) for i in range(3)])
    for i in range(3):
        assert torch.allclose(out[i], expected[i][prefill[i] - 1], atol=TOL, rtol=0)
    done = list(prefill)
    worst = 0.0
    for step in range(8):
        items, rows = [], []
        for i in range(3):
            if done[i] < lengths[i]:
                items.append(StepItem([prompts[i][done[i]]], done[i], tables[i]))
                rows.append(i)
        if step == 2:  # a newcomer's whole prompt prefills next to the decodes
            items.append(StepItem(prompts[3], 0, tables[3]))
            rows.append(3)
        out = runner.run(items)
        for row, i in enumerate(rows):
            pos = lengths[3] - 1 if i == 3 else done[i]
            worst = max(worst, (out[row] - expected[i][pos]).abs().max().item())
            if i != 3:
                done[i] += 1
    assert worst <= TOL
