"""The reference engine on the tiny distilled-R1 checkpoints (dense Qwen2, Llama): the same
scheduler, prefix cache, chunked prefill and stats as for R1, greedy text equal to
transformers' `generate()`, and expert-parallel settings refused with the setting named."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from serve.cli import main
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.architecture import check_parallelism
from serve.engine.reference.checkpoint import load_model_args
from serve.engine.reference.dense_args import ARCHITECTURES, DenseArgs
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.engine.reference.ep_engine import start_ep_engine
from serve.errors import ConfigError, UnsupportedConfigError

GREEDY = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def dense_dir(request):
    return request.getfixturevalue(f"tiny_{request.param}_dir")


@pytest.fixture(scope="module")
def loaded(dense_dir):
    engine = ReferenceEngine.from_checkpoint(dense_dir, EngineConfig(kv_pages=64))
    asyncio.run(engine.shutdown())
    return engine.model, engine.tokenizer


def make_engine(loaded, **config) -> ReferenceEngine:
    model, tokenizer = loaded
    return ReferenceEngine(model, tokenizer, EngineConfig(**config))


async def collect(engine, request: GenerationRequest) -> dict:
    ids, finish, usage = [], None, None
    async for d in engine.generate(request):
        ids.extend(d.token_ids)
        finish, usage = d.finish_reason, d.usage or usage
    return {"ids": ids, "finish": finish, "usage": usage}


def run_waves(engine, waves: list[list[GenerationRequest]]) -> list[dict]:
    async def main():
        try:
            out = []
            for wave in waves:
                out += await asyncio.wait_for(
                    asyncio.gather(*(collect(engine, r) for r in wave)), 120)
            return out
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


def test_batched_greedy_equals_transformers_generate(loaded, dense_dir):
    transformers = pytest.importorskip("transformers")
    model, _ = loaded
    ps = prompts(3, shared=0, own=11, vocab=model.args.vocab_size, seed=1)
    got = run_waves(make_engine(loaded, page_size=8, kv_pages=64), [[req(i, p)
                                                                      for i, p in enumerate(ps)]])
    ref = getattr(transformers, ARCHITECTURES[model.args.architecture]).from_pretrained(
        dense_dir, dtype=torch.float32).eval()
    for p, r in zip(ps, got, strict=True):
        out = ref.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
        assert r["ids"] == out[0, len(p):].tolist()


def test_prefix_cache_reuses_kv_and_keeps_greedy_tokens(loaded):
    ps = prompts(6, shared=70, own=5, vocab=loaded[0].args.vocab_size)
    waves = [[req(i, p) for i, p in enumerate(ps[:3])],
             [req(i + 3, p) for i, p in enumerate(ps[3:])]]
    cached = run_waves(make_engine(loaded, page_size=8, kv_pages=256), waves)
    uncached = run_waves(make_engine(loaded, page_size=8, kv_pages=256, prefix_cache=False),
                         waves)
    assert [r["ids"] for r in cached] == [r["ids"] for r in uncached]
    assert all(r["usage"].cached_tokens >= 64 for r in cached[3:])
    assert all(r["usage"].cached_tokens == 0 for r in uncached)


def test_chunked_prefill_and_preemption_give_the_same_tokens(loaded):
    ps = prompts(4, shared=10, own=60, vocab=loaded[0].args.vocab_size, seed=4)
    waves = [[req(i, p) for i, p in enumerate(ps)]]
    whole = run_waves(make_engine(loaded, page_size=8, kv_pages=256), waves)
    tight = make_engine(loaded, page_size=8, kv_pages=24, max_batched_tokens=32, max_running=8)
    chunked = run_waves(tight, waves)
    assert [r["ids"] for r in whole] == [r["ids"] for r in chunked]
    assert tight.schedulers[0].preemptions > 0


def test_stats_carry_the_prefix_digest(loaded):
    ps = prompts(2, shared=40, own=3, vocab=loaded[0].args.vocab_size, seed=9)
    engine = make_engine(loaded, page_size=8, kv_pages=64)
    run_waves(engine, [[req(0, ps[0])], [req(1, ps[1])]])
    s = engine.stats()
    assert s.prefix_cache_hit_tokens >= 40 and len(s.cached_block_hashes) >= 5
    assert s.kv_pages_total == 64 and s.page_size == 8


def test_chat_template_and_think_tokens_come_from_the_checkpoint(loaded):
    _, tokenizer = loaded
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                        add_generation_prompt=True)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith("<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>")
    assert text.endswith("<think>\n")
    assert tokenizer.think_start_id is not None and tokenizer.think_end_id is not None


def test_expert_parallel_settings_are_refused_naming_the_setting(dense_dir):
    args = load_model_args(dense_dir)
    check_parallelism(args, "m")  # one process: fine
    with pytest.raises(ConfigError, match=r"engine\.ep_size=2 .*dense"):
        check_parallelism(args, "m", ep_size=2)
    with pytest.raises(ConfigError, match=r"engine\.nodes_per_replica=2"):
        check_parallelism(args, "m", nodes=2)
    with pytest.raises(ConfigError, match=r"engine\.expert_placement"):
        check_parallelism(args, "m", expert_placement="eplb.json")
    # refused before any rank starts (no Ray needed)
    with pytest.raises(ConfigError, match=r"engine\.ep_size=4"):
        start_ep_engine(dense_dir, EngineConfig(), ep=4)


def test_cli_refuses_ep_and_writes_tiny_dense_checkpoints(dense_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(dense_dir), "--prompt", "hi", "--ep", "2"]) == 2
    assert "engine.ep_size=2 (--ep)" in capsys.readouterr().err
    arch = load_model_args(dense_dir).architecture
    assert main(["tiny-model", str(tmp_path / "m"), "--arch", arch, "--dtype", "bf16"]) == 0
    args = load_model_args(tmp_path / "m")
    assert isinstance(args, DenseArgs) and args.architecture == arch
    assert json.loads((tmp_path / "m" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert main(["tiny-model", str(tmp_path / "f"), "--arch", arch, "--dtype", "fp8"]) == 2


@pytest.mark.parametrize(("key", "value"), [
    ("use_sliding_window", True), ("mlp_bias", True), ("hidden_act", "gelu"),
    ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}), ("num_key_value_heads", 3)])
def test_unsupported_dense_configs_name_the_key(tiny_qwen2_dir, key, value):
    cfg = json.loads((tiny_qwen2_dir / "config.json").read_text())
    cfg[key] = value
    with pytest.raises(UnsupportedConfigError, match=key if key != "rope_scaling" else "rope"):
        DenseArgs.from_dict(cfg)
