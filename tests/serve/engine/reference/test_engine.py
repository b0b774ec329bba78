"""The reference engine end to end on the tiny checkpoint: continuous batching, prefix cache,
preemption, sampling controls, abort, and bad input."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.errors import ContextLengthError, InvalidRequestError

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def loaded(tiny_fp32_dir):
    """Model and tokenizer loaded once; each test builds engines with its own config."""
    engine = ReferenceEngine.from_checkpoint(tiny_fp32_dir, EngineConfig(kv_pages=64))
    asyncio.run(engine.shutdown())
    return engine.model, engine.tokenizer


def make_engine(loaded, **config) -> ReferenceEngine:
    model, tokenizer = loaded
    return ReferenceEngine(model, tokenizer, EngineConfig(**config))


async def collect(engine, request: GenerationRequest) -> dict:
    ids, text, lps, finish, usage = [], [], [], None, None
    async for d in engine.generate(request):
        ids.extend(d.token_ids)
        text.append(d.text)
        lps.extend(d.logprobs or ())
        finish, usage = d.finish_reason, d.usage or usage
    return {"ids": ids, "text": "".join(text), "logprobs": lps, "finish": finish, "usage": usage}


def run_all(engine, requests, timeout=120.0) -> list[dict]:
    async def main():
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(collect(engine, r) for r in requests)), timeout)
        finally:
            await engine.shutdown()
    return asyncio.run(main())


def prompts(n: int, shared: int, own: int, vocab: int, seed: int = 0) -> list[tuple[int, ...]]:
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(2, vocab, (shared,), generator=g).tolist()
    return [tuple(prefix + torch.randint(2, vocab, (own + 3 * i,), generator=g).tolist())
            for i in range(n)]


def req(i: int, ids, sampling=GREEDY) -> GenerationRequest:
    return GenerationRequest(f"r{i}", tuple(ids), sampling)


def test_greedy_is_identical_with_prefix_cache_on_and_off(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(6, shared=70, own=5, vocab=vocab)
    first, second = ps[:3], ps[3:]

    def two_waves(prefix_cache: bool):
        engine = make_engine(loaded, page_size=8, kv_pages=256, prefix_cache=prefix_cache)

        async def main():
            try:
                a = await asyncio.gather(*(collect(engine, req(i, p)) for i, p in enumerate(first)))
                b = await asyncio.gather(*(collect(engine, req(i + 3, p))
                                           for i, p in enumerate(second)))
                return a + b
            finally:
                await engine.shutdown()
        return asyncio.run(main())

    cached, uncached = two_waves(True), two_waves(False)
    assert [r["ids"] for r in cached] == [r["ids"] for r in uncached]
    # the second wave really reused the 70-token prefix (64 tokens = 8 full pages)
    assert all(r["usage"].cached_tokens >= 64 for r in cached[3:])
    assert all(r["usage"].cached_tokens == 0 for r in uncached)


def test_greedy_is_identical_under_preemption(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(6, shared=0, own=20, vocab=vocab, seed=3)
    sampling = dataclasses.replace(GREEDY, max_tokens=40)
    ample = make_engine(loaded, page_size=8, kv_pages=256)
    expected = run_all(ample, [req(i, p, sampling) for i, p in enumerate(ps)])
    # 16 pages of 8 tokens hold two of these sequences at a time (each needs up to 8 pages)
    tight = make_engine(loaded, page_size=8, kv_pages=16, max_batched_tokens=64, max_running=8)
    got = run_all(tight, [req(i, p, sampling) for i, p in enumerate(ps)])
    assert [r["ids"] for r in got] == [r["ids"] for r in expected]
    assert tight.schedulers[0].preemptions > 0
    assert all(r["finish"] == "length" and len(r["ids"]) == 40 for r in got)


def test_chunked_prefill_gives_the_same_tokens(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(3, shared=10, own=90, vocab=vocab, seed=4)
    whole = run_all(make_engine(loaded, max_batched_tokens=512),
                    [req(i, p) for i, p in enumerate(ps)])
    chunked = run_all(make_engine(loaded, max_batched_tokens=32, max_running=8),
                      [req(i, p) for i, p in enumerate(ps)])
    assert [r["ids"] for r in whole] == [r["ids"] for r in chunked]


def test_seeded_sampling_is_independent_of_the_batch(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(5, shared=0, own=12, vocab=vocab, seed=5)
    seeded = SamplingParams(max_tokens=20, temperature=0.9, top_p=0.95, seed=1234,
                            ignore_eos=True)
    alone = run_all(make_engine(loaded), [req(0, ps[0], seeded)])[0]
    others = [req(i, p, dataclasses.replace(seeded, seed=None)) for i, p in enumerate(ps[1:], 1)]
    crowded = run_all(make_engine(loaded), [req(0, ps[0], seeded), *others])[0]
    assert alone["ids"] == crowded["ids"]
    other_seed = run_all(make_engine(loaded), [req(0, ps[0], dataclasses.replace(seeded,
                                                                                  seed=99))])[0]
    assert other_seed["ids"] != alone["ids"]


def test_stop_string_cuts_the_text(loaded):
    model, tokenizer = loaded
    ids = tokenizer.encode("The quick brown fox")
    full = run_all(make_engine(loaded), [req(0, ids)])[0]
    text = full["text"]
    assert len(text) > 6
    stop = text[3:6]
    cut = run_all(make_engine(loaded), [req(0, ids, dataclasses.replace(GREEDY, stop=(stop,)))])[0]
    assert cut["finish"] == "stop"
    assert cut["text"] == text[: text.index(stop)]


def test_max_tokens_and_usage(loaded):
    vocab = loaded[0].args.vocab_size
    (p,) = prompts(1, shared=0, own=11, vocab=vocab, seed=6)
    r = run_all(make_engine(loaded), [req(0, p, dataclasses.replace(GREEDY, max_tokens=7))])[0]
    assert r["finish"] == "length" and len(r["ids"]) == 7
    assert (r["usage"].prompt_tokens, r["usage"].completion_tokens) == (11, 7)


def test_logprobs_are_the_models_log_softmax(loaded):
    model, _ = loaded
    (p,) = prompts(1, shared=0, own=9, vocab=model.args.vocab_size, seed=7)
    sampling = dataclasses.replace(GREEDY, max_tokens=6, logprobs=True, top_logprobs=3)
    r = run_all(make_engine(loaded), [req(0, p, sampling)])[0]
    assert len(r["logprobs"]) == 6
    for lp, token in zip(r["logprobs"], r["ids"], strict=True):
        assert lp.token_id == token
        assert lp.top[0][0] == token  # greedy picks the most likely token
        assert lp.top[0][1] == pytest.approx(lp.logprob)
        assert [x[1] for x in lp.top] == sorted((x[1] for x in lp.top), reverse=True)
        assert lp.logprob <= 0


def test_bad_input_is_rejected_and_the_engine_keeps_serving(loaded):
    vocab = loaded[0].args.vocab_size
    engine = make_engine(loaded, max_model_len=64)

    async def main():
        try:
            with pytest.raises(ContextLengthError, match=r"60 tokens.*max_tokens \(10\)"):
                await collect(engine, req(0, [5] * 60, dataclasses.replace(GREEDY, max_tokens=10)))
            with pytest.raises(InvalidRequestError, match=f"token id {vocab} is outside"):
                await collect(engine, req(1, [5, vocab, 6]))
            with pytest.raises(InvalidRequestError, match="token id -1"):
                await collect(engine, req(2, [5, -1]))
            with pytest.raises(InvalidRequestError, match="empty"):
                await collect(engine, req(3, []))
            with pytest.raises(InvalidRequestError, match="top_p"):
                await collect(engine, req(4, [5, 6], dataclasses.replace(GREEDY, top_p=0.0)))
            return await asyncio.wait_for(collect(engine, req(5, [5, 6, 7])), 60)
        finally:
            await engine.shutdown()

    ok = asyncio.run(main())
    assert ok["finish"] == "length" and len(ok["ids"]) == GREEDY.max_tokens


def test_abort_and_disconnect_free_pages_at_once(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(2, shared=0, own=30, vocab=vocab, seed=8)
    engine = make_engine(loaded, page_size=8, kv_pages=64, prefix_cache=False)
    long = dataclasses.replace(GREEDY, max_tokens=400)

    async def main():
        try:
            seen, last = 0, None
            async for d in engine.generate(req(0, ps[0], long)):
                seen += 1
                last = d
                if seen == 3:
                    await engine.abort("r0")
            assert last.finish_reason == "abort" and seen < 50
            agen = engine.generate(req(1, ps[1], long))
            async for _ in agen:  # a client that goes away after one token
                break
            await agen.aclose()
            for _ in range(1000):  # up to 10 s on a busy host
                await asyncio.sleep(0.01)
                scheduler = engine.schedulers[0]
                if scheduler.kv_cache.free_pages == 64 and not scheduler.has_work():
                    return True
            return False
        finally:
            await engine.shutdown()

    assert asyncio.run(main())


def test_stats_report_load_and_cache(loaded):
    vocab = loaded[0].args.vocab_size
    ps = prompts(2, shared=40, own=3, vocab=vocab, seed=9)
    engine = make_engine(loaded, page_size=8, kv_pages=64)

    async def main():
        try:
            await collect(engine, req(0, ps[0]))
            await collect(engine, req(1, ps[1]))
            await asyncio.sleep(0.05)
            return engine.stats()
        finally:
            await engine.shutdown()

    s = asyncio.run(main())
    assert s.running == 0 and s.waiting == 0
    assert s.prefix_cache_hit_tokens >= 40 and s.prompt_tokens == len(ps[0]) + len(ps[1])
    assert s.kv_pages_total == 64 and s.page_size == 8
    assert len(s.cached_block_hashes) >= 5
    assert s.generation_tokens_per_s > 0
