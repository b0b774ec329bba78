"""The reference engine as an expert-parallel group of Ray rank actors on simulated nodes:
token-identical to one rank, with contiguous and EPLB placements, and clean failure when a
rank dies."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import ray
import torch

from cluster.eplb import rebalance
from cluster.local_cluster import local_ray
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.engine.reference.ep_engine import start_ep_engine
from serve.errors import EngineDeadError

pytestmark = pytest.mark.multinode

CONFIG = EngineConfig(page_size=8, kv_pages=128, max_batched_tokens=256)
GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def two_nodes():
    with local_ray(2, cpus_per_node=2):
        yield


@pytest.fixture(scope="module")
def prompts(tiny_fp32_dir):
    g = torch.Generator().manual_seed(11)
    shared = torch.randint(2, 3000, (20,), generator=g).tolist()
    lengths = [5, 40, 17, 3, 29, 11]
    return [tuple((shared if i % 2 else []) + torch.randint(2, 3000, (n,), generator=g).tolist())
            for i, n in enumerate(lengths)]


async def _collect(engine, i, prompt, sampling=GREEDY):
    ids = []
    async for d in engine.generate(GenerationRequest(f"q{i}", prompt, sampling)):
        ids.extend(d.token_ids)
    return ids


def _generate_all(engine, prompts) -> list[list[int]]:
    async def main():
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(_collect(engine, i, p) for i, p in enumerate(prompts))), 180)
        finally:
            await engine.shutdown()
    return asyncio.run(main())


@pytest.fixture(scope="module")
def expected(tiny_fp32_dir, prompts):
    return _generate_all(ReferenceEngine.from_checkpoint(tiny_fp32_dir, CONFIG), prompts)


def test_ep2_on_one_node_matches_ep1(two_nodes, tiny_fp32_dir, prompts, expected):
    engine = start_ep_engine(tiny_fp32_dir, CONFIG, ep=2, nodes=1)
    assert len(engine.schedulers) == 2
    assert _generate_all(engine, prompts) == expected


def test_ep4_over_two_nodes_matches_ep1(two_nodes, tiny_fp32_dir, prompts, expected):
    engine = start_ep_engine(tiny_fp32_dir, CONFIG, ep=4, nodes=2)
    ranks = engine.executor.group.ranks
    assert len({r.node_id for r in ranks}) == 2  # one bundle per node, two ranks on each
    group = engine.executor.group
    resident = group.get(group.call("resident_expert_bytes"), timeout_s=30)
    total = group.get(group.call("total_expert_bytes"), timeout_s=30)[0]
    assert all(abs(b - total / 4) <= 0.05 * total for b in resident)
    got = _generate_all(engine, prompts)
    assert got == expected
    # both data-parallel ranks of the group took requests (each cached the pages it computed)
    assert sum(1 for s in engine.schedulers if s.kv_cache.cached_pages) >= 2


def test_eplb_placement_with_redundant_experts_matches_ep1(two_nodes, tiny_fp32_dir, prompts,
                                                           expected):
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.5, size=(3, 16)).astype(float)  # 3 MoE layers, 16 experts, skewed
    placement = rebalance(counts, num_ranks=4, num_nodes=2, num_redundant=4, num_groups=4)
    assert placement.num_redundant == 4
    engine = start_ep_engine(tiny_fp32_dir, CONFIG, ep=4, nodes=2, placement=placement)
    assert _generate_all(engine, prompts) == expected


def test_a_dead_rank_fails_requests_fast_and_a_new_group_serves(two_nodes, tiny_fp32_dir,
                                                                prompts, expected):
    engine = start_ep_engine(tiny_fp32_dir, CONFIG, ep=2, nodes=2)
    victim = engine.executor.group.actors[1]
    long = SamplingParams(max_tokens=900, temperature=0.0, ignore_eos=True)

    async def main():
        seen = 0
        started = None
        with pytest.raises(EngineDeadError, match="rank 1"):
            async for _ in engine.generate(GenerationRequest("doomed", prompts[0], long)):
                seen += 1
                if seen == 3:
                    ray.kill(victim, no_restart=True)
                    started = time.monotonic()
        assert time.monotonic() - started < 10
        with pytest.raises(EngineDeadError):
            await engine.health()
        await engine.shutdown()

    asyncio.run(main())
    fresh = start_ep_engine(tiny_fp32_dir, CONFIG, ep=2, nodes=2)
    assert _generate_all(fresh, prompts[:2]) == expected[:2]
