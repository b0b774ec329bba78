"""Time to first token of a request whose 1,024-token prompt prefix is already in the prefix
cache, against the same request with nothing cached, side by side in one run.

    python -m benchmarks.prefix_reuse [--model DIR | --arch deepseek-v3|qwen2|llama]
        [--prefix 1024] [--suffix 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from benchmarks.common import add_arch_argument, random_prompts, tiny_checkpoint
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine


async def _ttft(engine: ReferenceEngine, request_id: str, prompt: list[int]) -> tuple[float, int]:
    sampling = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    first, cached = None, 0
    async for d in engine.generate(GenerationRequest(request_id, tuple(prompt), sampling)):
        first = first or time.perf_counter() - t0
        cached = d.usage.cached_tokens if d.usage else cached
    return first, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    add_arch_argument(ap)
    ap.add_argument("--prefix", type=int, default=1024)
    ap.add_argument("--suffix", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ns = ap.parse_args()
    path = tiny_checkpoint(ns.model, ns.arch)
    config = EngineConfig(kv_pages=1024)
    engine = ReferenceEngine.from_checkpoint(path, config)
    vocab = engine.args.vocab_size
    cold_times, warm_times, hits = [], [], []
    for r in range(ns.repeats):
        prefix, warm_suffix, suffix = random_prompts(3, ns.prefix, vocab, seed=r)
        prompt = prefix + suffix[: ns.suffix]
        cold = ReferenceEngine(engine.model, engine.tokenizer, config)  # empty cache
        t, _ = asyncio.run(_ttft(cold, f"cold{r}", prompt))
        asyncio.run(cold.shutdown())
        cold_times.append(t)
        warm = ReferenceEngine(engine.model, engine.tokenizer, config)
        asyncio.run(_ttft(warm, f"fill{r}", prefix + warm_suffix[: ns.suffix]))  # caches prefix
        t, cached = asyncio.run(_ttft(warm, f"warm{r}", prompt))
        asyncio.run(warm.shutdown())
        warm_times.append(t)
        hits.append(cached)
    asyncio.run(engine.shutdown())
    cold_p50, warm_p50 = statistics.median(cold_times), statistics.median(warm_times)
    print(json.dumps({
        "prompt_tokens": ns.prefix + ns.suffix, "cached_tokens": hits,
        "ttft_uncached_ms_p50": round(cold_p50 * 1e3, 1),
        "ttft_cached_ms_p50": round(warm_p50 * 1e3, 1),
        "ratio": round(warm_p50 / cold_p50, 3),
    }))


if __name__ == "__main__":
    main()
