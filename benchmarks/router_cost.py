"""Microseconds per routing decision of `RouterCore` at 16 replicas, 100,000 cached blocks.

    python -m benchmarks.router_cost [--replicas 16] [--blocks 100000] [--decisions 5000]

Each replica reports a digest of 100,000 / replicas cached block hashes (100,000 tracked in
all) plus the router's own speculative entries as it goes; each request is a 4,096-token prompt
(256 blocks of 16) that shares a random-length prefix with a cached one. Timed: `choose` plus
`on_routed` (the per-request work of the Serve adapter apart from hashing), and separately the
prompt's block hashing (`block_hashes`), which the adapter does once per request.
"""

from __future__ import annotations

import argparse
import random
import time

from serve.engine.block_hash import block_hashes
from serve.engine.percentile import percentile
from serve.routing.knobs import RouterKnobs
from serve.routing.router_core import RoutedRequest, RouterCore

PAGE = 16


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--blocks", type=int, default=100_000)
    p.add_argument("--decisions", type=int, default=5000)
    p.add_argument("--prompt-tokens", type=int, default=4096)
    args = p.parse_args(argv)
    rng = random.Random(0)
    core = RouterCore(RouterKnobs(), rng=random.Random(0))
    ids = [f"replica-{i}" for i in range(args.replicas)]

    # Cached conversations: chains of 256 blocks each, spread over the replicas.
    n_blocks = args.prompt_tokens // PAGE
    prompts = [[rng.randrange(2, 100_000) for _ in range(args.prompt_tokens)]
               for _ in range(max(1, args.blocks // n_blocks))]
    digests: dict[str, list[int]] = {rid: [] for rid in ids}
    for i, toks in enumerate(prompts):
        digests[ids[i % len(ids)]].extend(block_hashes(toks, PAGE))
    for rid in ids:
        core.report(rid, {"running": 32, "waiting": 4, "kv_pages_used": 20_000,
                          "kv_pages_total": 40_000, "page_size": PAGE,
                          "queued_prefill_tokens": rng.randrange(0, 50_000),
                          "expected_remaining_decode_tokens": 32 * 30_000,
                          "generation_tokens_per_s": 1500.0, "prefix_cache_hit_tokens": 0,
                          "prompt_tokens": 0, "cached_block_hashes": tuple(digests[rid])},
                    now=0.0)
    tracked = sum(len(d) for d in digests.values())

    decide_us, hash_us = [], []
    for i in range(args.decisions):
        base = prompts[rng.randrange(len(prompts))]
        keep = rng.randrange(0, args.prompt_tokens)
        toks = base[:keep] + [rng.randrange(2, 100_000) for _ in range(args.prompt_tokens - keep)]
        t0 = time.perf_counter()
        hashes = tuple(block_hashes(toks, PAGE))
        t1 = time.perf_counter()
        req = RoutedRequest(f"q{i}", hashes, PAGE, len(toks), 32768)
        now = 1.0 + i * 0.001
        choice = core.choose(ids, req, now)
        core.on_routed(choice.ranked[0], req, now)
        t2 = time.perf_counter()
        core.on_completed(choice.ranked[0], req.request_id, now)
        hash_us.append((t1 - t0) * 1e6)
        decide_us.append((t2 - t1) * 1e6)

    decide_us.sort()
    hash_us.sort()
    print(f"{args.replicas} replicas, {tracked:,} cached blocks tracked, "
          f"{args.decisions} decisions, {args.prompt_tokens}-token prompts")
    print(f"  decision (choose + on_routed): p50 {percentile(decide_us, 0.5):7.1f} us   "
          f"p99 {percentile(decide_us, 0.99):7.1f} us")
    print(f"  prompt block hashing:          p50 {percentile(hash_us, 0.5):7.1f} us   "
          f"p99 {percentile(hash_us, 0.99):7.1f} us")


if __name__ == "__main__":
    main()
