"""The prefix-aware router live in Ray Serve: with two engine replicas, requests that share a
long prefix land on the replica that cached it, and that engine reports the cached tokens."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest
from ray import serve

from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

pytestmark = pytest.mark.slow

SHARED = ("You are a careful assistant. Here is a long shared document that every turn of the "
          "conversation repeats before its question. " * 12)



def run_app(tiny_fp32_dir, policy: str):
    return R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 1024},
        "engine": {"devices_per_node": 1, "kv_pages": 256, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 64},
        "router": {"policy": policy},
        "autoscaling": {"min_replicas": 2, "max_replicas": 2},
        "app_name": f"r1serve-{policy}",
    })


@pytest.mark.parametrize("policy", ["prefix_aware"])
def test_shared_prefix_requests_follow_the_cache(tiny_fp32_dir, policy):
    config = run_app(tiny_fp32_dir, policy)
    with local_ray(1, cpus_per_node=2):
        try:
            start_app(config)
            wait_healthy(config, timeout_s=240, progress=lambda _: None)
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{config.api.port}/v1",
                              api_key="none", max_retries=0, timeout=60)
            usages = []
            for i in range(6):
                out = c.chat.completions.create(
                    model="deepseek-r1", max_tokens=2,
                    messages=[{"role": "user", "content": f"{SHARED} Question {i}?"}])
                usages.append(out.usage)
            prompt = usages[0].prompt_tokens
            assert prompt > 200
            cached = [u.prompt_tokens_details.cached_tokens for u in usages[1:]]
            # every later request found the shared prefix (all but the last partial page)
            assert all(c >= prompt - 2 * 16 - 8 for c in cached), (prompt, cached)
            metrics = httpx.get(f"http://127.0.0.1:{config.api.port}/metrics", timeout=30).text
            predicted = next(float(line.split()[-1]) for line in metrics.splitlines()
                             if line.startswith("r1serve_router_predicted_cached_tokens_total"))
            assert predicted > 0  # the router expected those hits, and says so
            weight = next(float(line.split()[-1]) for line in metrics.splitlines()
                          if line.startswith("r1serve_router_intake_weight"))
            assert weight == 2.0  # too few reuses seen to tell: full caches' intake evens out
        finally:
            serve.shutdown()
