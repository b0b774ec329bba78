"""The dense reference model against transformers' Qwen2ForCausalLM and LlamaForCausalLM on
tiny distilled-R1 checkpoints: fp32 prefill, step-by-step decode through the paged K/V cache, a
mixed batch, a single-file bf16 checkpoint, and bf16 compute."""

from __future__ import annotations

import pytest
import torch

from serve.engine.reference.architecture import build_model
from serve.engine.reference.checkpoint import load_model_args, load_state_dict
from serve.engine.reference.dense_args import ARCHITECTURES, DenseArgs
from serve.engine.reference.model_runner import ModelRunner, StepItem
from serve.engine.reference.tiny_dense_checkpoint import write_tiny_dense_checkpoint

transformers = pytest.importorskip("transformers")

TOL = 1e-4
PAGE = 8


def _load(path, dtype=torch.float32):
    args = load_model_args(path)
    assert isinstance(args, DenseArgs)
    ours = build_model(args).to(dtype)
    ours.load_state_dict(load_state_dict(path, args, dtype=dtype), strict=True)
    ref = getattr(transformers, ARCHITECTURES[args.architecture]).from_pretrained(
        path, dtype=dtype)
    return ours.eval(), ref.eval()


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def models(request):
    return _load(request.getfixturevalue(f"tiny_{request.param}_dir"))


def _reference_logits(ref, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return ref(torch.tensor([ids])).logits[0].float()


def _prompts(vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (n,), generator=g).tolist() for n in lengths]


def test_tiny_checkpoints_keep_the_distills_attention(tiny_qwen2_dir, tiny_llama_dir):
    qwen, llama = load_model_args(tiny_qwen2_dir), load_model_args(tiny_llama_dir)
    assert qwen.qkv_bias and not qwen.o_bias and qwen.rope.rope_type == "default"
    assert not llama.qkv_bias and llama.rope.rope_type == "llama3"
    for args in (qwen, llama):
        assert args.num_attention_heads == 4 * args.num_key_value_heads
        assert args.kv_cache_dim == 2 * args.num_key_value_heads * args.head_dim


def test_rope_frequencies_match_transformers(models):
    ours, ref = models
    got = ours.rope.inv_freq
    want = ref.model.rotary_emb.inv_freq.float()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


def test_prefill_logits_match_transformers(models):
    ours, ref = models
    (ids,) = _prompts(ours.args.vocab_size, [37])
    runner = ModelRunner(ours, num_pages=8, page_size=PAGE)
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
    """Three prompts prefilled in one step, then decoded together, with a fourth joining
    mid-way: every row equals its own unbatched reference."""
    ours, ref = models
    lengths = [9, 30, 17, 12]
    prompts = _prompts(ours.args.vocab_size, lengths, seed=2)
    expected = [_reference_logits(ref, p) for p in prompts]
    runner = ModelRunner(ours, num_pages=32, page_size=PAGE)
    tables = [list(range(i * 8, i * 8 + 8)) for i in range(4)]
    prefill = [5, 22, 11]
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


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def bf16_dir(request, tmp_path_factory):
    """A single-file bf16 checkpoint, as the distills ship their weights."""
    return write_tiny_dense_checkpoint(tmp_path_factory.mktemp(f"{request.param}-bf16"),
                                       request.param, dtype="bf16", shards=1)


def test_bf16_checkpoint_in_fp32_matches_transformers(bf16_dir):
    ours, ref = _load(bf16_dir)
    (ids,) = _prompts(ours.args.vocab_size, [29], seed=3)
    got = ModelRunner(ours, num_pages=4, page_size=PAGE).run([StepItem(ids, 0, [0, 1, 2, 3])])
    assert torch.allclose(got[0], _reference_logits(ref, ids)[-1], atol=TOL, rtol=0)


def test_bf16_compute_stays_close_to_transformers_bf16(bf16_dir):
    """Both sides compute in bf16 (ours keeps cos/sin in fp32): logits agree to bf16's
    precision and pick the same next token."""
    ours, ref = _load(bf16_dir, dtype=torch.bfloat16)
    (ids,) = _prompts(ours.args.vocab_size, [33], seed=4)
    runner = ModelRunner(ours, num_pages=8, page_size=PAGE, cache_dtype=torch.bfloat16)
    expected = _reference_logits(ref, ids)
    runner.run([StepItem(ids[:25], 0, list(range(8)))])
    for t in range(25, len(ids)):
        got = runner.run([StepItem([ids[t]], t, list(range(8)))])[0]
        scale = expected[t].abs().max().item()
        assert (got - expected[t]).abs().max().item() <= 0.05 * scale
        assert got.argmax() == expected[t].argmax()
