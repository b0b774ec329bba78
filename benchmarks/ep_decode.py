"""Decode tokens/s of the tiny model at EP=1, 2 and 4 on this machine, with the all_to_all
payload per token, so the price of expert-parallel communication is visible.

    python -m benchmarks.ep_decode [--model DIR] [--requests 8] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import ray

from benchmarks.common import random_prompts, tiny_checkpoint
from cluster.local_cluster import local_ray
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.engine.reference.ep_engine import start_ep_engine


async def _run(engine: ReferenceEngine, prompts, new_tokens: int) -> tuple[float, int]:
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)

    async def one(i, p):
        n = 0
        async for d in engine.generate(GenerationRequest(f"d{i}", tuple(p), sampling)):
            n += len(d.token_ids)
        return n
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    return time.perf_counter() - t0, sum(counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ns = ap.parse_args()
    path = tiny_checkpoint(ns.model)
    config = EngineConfig(kv_pages=512)
    rows = []
    for ep in (1, 2, 4):
        with local_ray(1, cpus_per_node=ep):
            if ep == 1:
                engine = ReferenceEngine.from_checkpoint(path, config)
            else:
                engine = start_ep_engine(path, config, ep=ep)
            prompts = random_prompts(ns.requests, ns.prompt_len, engine.args.vocab_size)
            asyncio.run(_run(engine, prompts[:2], 4))  # warm-up
            sent_before = _bytes_sent(engine)
            seconds, generated = asyncio.run(_run(engine, prompts, ns.new_tokens))
            sent = _bytes_sent(engine) - sent_before
            asyncio.run(engine.shutdown())
        processed = generated + ns.requests * ns.prompt_len
        rows.append({"ep": ep, "decode_tokens_per_s": round(generated / seconds, 1),
                     "all_to_all_bytes_per_token": round(sent / processed, 1)})
    print(json.dumps({"requests": ns.requests, "new_tokens": ns.new_tokens, "results": rows}))


def _bytes_sent(engine: ReferenceEngine) -> int:
    group = getattr(engine.executor, "group", None)
    if group is None:
        return 0
    return sum(ray.get(group.call("bytes_sent")))


if __name__ == "__main__":
    main()
