"""Live routing on Ray Serve: two reference-engine replicas on a local Ray, a multi-turn
workload whose turns resend the growing conversation; r1serve's prefix-aware router against
Ray Serve's power-of-two-choices, run one after the other on the same machine. Reports the
prompt tokens the engines themselves say they served from cache, and TTFT p50.

    python -m benchmarks.router_live [--conversations 8] [--turns 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import openai
from ray import serve

from benchmarks.common import tiny_checkpoint
from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

DOC = ("Background for this conversation: a long reference document that the user keeps "
       "asking about, turn after turn, so every request repeats it. ") * 10



def _conversation(client: openai.OpenAI, c: int, turns: int) -> list[tuple[float, int, int]]:
    messages = [{"role": "system", "content": f"Conversation {c}. {DOC}"}]
    out = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"Question {t} of conversation {c}?"})
        t0 = time.perf_counter()
        ttft, usage = None, None
        for chunk in client.chat.completions.create(
                model="deepseek-r1", messages=messages, max_tokens=8, temperature=0,
                stream=True, stream_options={"include_usage": True},
                extra_headers={"x-session-id": f"conv-{c}"}):
            if ttft is None and chunk.choices:
                ttft = time.perf_counter() - t0
            usage = chunk.usage or usage
        out.append((ttft, usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens))
        messages.append({"role": "assistant", "content": f"Answer {t}."})
    return out


def _run(path, port: int, policy: str, conversations: int, turns: int) -> dict:
    config = R1ServeConfig.from_dict({
        "model": {"path": str(path), "context_length": 2048},
        "engine": {"devices_per_node": 1, "kv_pages": 512, "page_size": 16},
        "api": {"port": port, "max_tokens_cap": 64},
        "router": {"policy": policy},
        "autoscaling": {"min_replicas": 2, "max_replicas": 2},
        "app_name": f"bench-{policy}"})
    start_app(config)
    wait_healthy(config, timeout_s=300, progress=lambda _: None)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{config.api.port}/v1", api_key="none",
                           max_retries=0, timeout=120)
    with ThreadPoolExecutor(conversations) as pool:
        results = [r for conv in pool.map(lambda c: _conversation(client, c, turns),
                                          range(conversations)) for r in conv]
    serve.delete(config.app_name)
    prompt = sum(r[1] for r in results)
    cached = sum(r[2] for r in results)
    return {"policy": policy, "requests": len(results), "prompt_tokens": prompt,
            "engine_cached_tokens": cached, "hit_rate": round(cached / prompt, 3),
            "ttft_p50_ms": round(statistics.median(r[0] for r in results) * 1e3, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=4)
    ns = ap.parse_args()
    path = tiny_checkpoint(None)
    port = free_port()
    with local_ray(1, cpus_per_node=2):
        serve.start(http_options={"host": "127.0.0.1", "port": port})  # one proxy, both runs
        rows = [_run(path, port, policy, ns.conversations, ns.turns)
                for policy in ("prefix_aware", "power_of_two")]
        serve.shutdown()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
