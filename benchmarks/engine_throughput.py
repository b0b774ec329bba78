"""Output tokens/s: 16 concurrent greedy requests through the reference engine, against
transformers' `generate()` running the same requests one at a time, side by side in one run.

    python -m benchmarks.engine_throughput [--model DIR | --arch deepseek-v3|qwen2|llama]
        [--requests 16] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import torch

from benchmarks.common import add_arch_argument, random_prompts, tiny_checkpoint
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine


async def _ours(engine: ReferenceEngine, prompts, new_tokens: int) -> list[list[int]]:
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)

    async def one(i, p):
        ids = []
        async for d in engine.generate(GenerationRequest(f"b{i}", tuple(p), sampling)):
            ids.extend(d.token_ids)
        return ids
    return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))


def _hf(model, prompts, new_tokens: int) -> list[list[int]]:
    outs = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)
        outs.append(out[0, len(p):].tolist())
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    add_arch_argument(ap)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ns = ap.parse_args()
    import transformers

    path = tiny_checkpoint(ns.model, ns.arch)
    engine = ReferenceEngine.from_checkpoint(path, EngineConfig())
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = random_prompts(ns.requests, ns.prompt_len, engine.args.vocab_size)
    total = ns.requests * ns.new_tokens

    asyncio.run(_ours(engine, prompts[:2], 8))  # warm-up
    _hf(hf, prompts[:1], 8)
    t0 = time.perf_counter()
    ours = asyncio.run(_ours(engine, prompts, ns.new_tokens))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = _hf(hf, prompts, ns.new_tokens)
    t_hf = time.perf_counter() - t0
    asyncio.run(engine.shutdown())

    same = sum(a == b for a, b in zip(ours, ref, strict=True))
    result = {
        "requests": ns.requests, "new_tokens": ns.new_tokens, "prompt_len": ns.prompt_len,
        "r1serve_tokens_per_s": round(total / t_ours, 1),
        "transformers_sequential_tokens_per_s": round(total / t_hf, 1),
        "speedup": round(t_hf / t_ours, 2),
        "identical_outputs": f"{same}/{ns.requests}",
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
