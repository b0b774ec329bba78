"""What serving adds to latency, measured side by side in one run:

(a) the framework's floor: a bare Ray Serve app whose FastAPI ingress streams fixed strings
    from a stub deployment through a DeploymentHandle, against the same strings from a plain
    FastAPI app under uvicorn;
(b) r1serve's whole HTTP path (proxy, OpenAI ingress, router, engine replica) against the same
    engine called in-process with the same prompts.

Each reports the time to first token (p50) and the time per later token (p50) it adds: the
mean gap between a stream's data lines, one line per token, which is (last - first) / (n - 1).
The engine replica sends several decode steps' tokens in one Ray message
(`engine.stream_batching_interval_ms`), so r1serve's lines come in bursts; the longest gap
within a stream (p50 over requests) is reported beside it. `--stream-batching-interval-ms 0`
measures one message per step.

    python -m benchmarks.serving_overhead [--requests 20] [--tokens 64]
        [--stream-batching-interval-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

import httpx2 as httpx
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from ray import serve

from benchmarks.common import tiny_checkpoint
from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.runner import start_app, wait_healthy


def _pieces(n: int) -> list[str]:
    return [f"tok{i} " for i in range(n)]


def _plain_app(n: int) -> FastAPI:
    app = FastAPI()

    @app.get("/stream")
    async def stream():
        async def gen():
            for p in _pieces(n):
                yield f"data: {p}\n\n"
        return StreamingResponse(gen(), media_type="text/event-stream")
    return app


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Stub:
    async def stream(self, n: int):
        for p in _pieces(n):
            yield p


_bare = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(_bare)
class BareIngress:
    def __init__(self, stub) -> None:
        self.stub = stub.options(stream=True)

    @_bare.get("/stream")
    async def stream(self, n: int):
        async def gen():
            async for p in self.stub.stream.remote(n):
                yield f"data: {p}\n\n"
        return StreamingResponse(gen(), media_type="text/event-stream")


# One client for every request, as a real client keeps its connections: building a client
# (TLS context and all) costs tens of milliseconds, which would drown what is measured.
_CLIENT = httpx.Client(timeout=120)


def _time_stream(method: str, url: str, **kw) -> tuple[float, float, float]:
    """(time to first data line, mean and longest time between later data lines)."""
    t0 = time.perf_counter()
    stamps = []
    with _CLIENT.stream(method, url, **kw) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and "[DONE]" not in line and '"usage"' not in line:
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)] or [0.0]
    return stamps[0] - t0, statistics.mean(gaps), max(gaps)


async def _in_process(engine, prompt, tokens: int, i: int) -> tuple[float, float, float]:
    sampling = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    stamps = []
    async for d in engine.generate(GenerationRequest(f"in{i}", tuple(prompt), sampling)):
        if d.token_ids:
            stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return stamps[0] - t0, statistics.mean(gaps), max(gaps)


def _p50s(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(statistics.median(s[k] for s in samples) for k in range(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--router", choices=["prefix_aware", "power_of_two"], default="prefix_aware")
    ap.add_argument("--stream-batching-interval-ms", type=float, default=None,
                    help="engine.stream_batching_interval_ms (default: the config's default)")
    ns = ap.parse_args()
    torch.set_num_threads(1)  # as the engine replica runs (engine.devices_per_node: 1)
    path = tiny_checkpoint(None)
    plain_port, serve_port = free_port(), free_port()
    server = uvicorn.Server(uvicorn.Config(_plain_app(ns.tokens), host="127.0.0.1",
                                           port=plain_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    batching = ({} if ns.stream_batching_interval_ms is None else
                {"stream_batching_interval_ms": ns.stream_batching_interval_ms})
    config = R1ServeConfig.from_dict({
        "model": {"path": str(path), "context_length": 1024},
        "engine": {"devices_per_node": 1, "kv_pages": 256, **batching},
        "api": {"port": serve_port, "max_tokens_cap": 512}, "router": {"policy": ns.router},
        "app_name": "r1serve-bench"})
    with local_ray(1, cpus_per_node=2):
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        serve.run(BareIngress.bind(Stub.bind()), name="bare", route_prefix="/bare",
                  blocking=False)
        start_app(config)
        wait_healthy(config, timeout_s=300, progress=lambda _: None)
        engine = ReferenceEngine.from_checkpoint(path, EngineConfig(kv_pages=256,
                                                                    max_model_len=1024))
        prompt = engine.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Measure me."}], add_generation_prompt=True)
        body = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "Measure me."}],
                "max_tokens": ns.tokens, "temperature": 0, "ignore_eos": True, "stream": True}
        plain, bare, ours, local = [], [], [], []
        for i in range(ns.requests + 2):  # interleaved; the first two are warm-up
            samples = (
                _time_stream("GET", f"http://127.0.0.1:{plain_port}/stream"),
                _time_stream("GET", f"http://127.0.0.1:{serve_port}/bare/stream",
                             params={"n": ns.tokens}),
                _time_stream("POST", f"http://127.0.0.1:{serve_port}/v1/chat/completions",
                             json=body),
                asyncio.run(_in_process(engine, prompt, ns.tokens, i)),
            )
            if i >= 2:
                for acc, s in zip((plain, bare, ours, local), samples, strict=True):
                    acc.append(s)
        asyncio.run(engine.shutdown())
        serve.shutdown()
    server.should_exit = True
    (p_ttft, p_tok, _), (b_ttft, b_tok, b_gap) = _p50s(plain), _p50s(bare)
    (o_ttft, o_tok, o_gap), (l_ttft, l_tok, l_gap) = _p50s(ours), _p50s(local)
    floor = (b_ttft - p_ttft, b_tok - p_tok)
    added = (o_ttft - l_ttft, o_tok - l_tok)
    ms = lambda x: round(x * 1e3, 3)  # noqa: E731
    print(json.dumps({
        "requests": ns.requests, "tokens": ns.tokens,
        "stream_batching_interval_ms": config.engine.stream_batching_interval_ms,
        "plain_fastapi_ms": {"ttft_p50": ms(p_ttft), "per_token_p50": ms(p_tok)},
        "bare_serve_ms": {"ttft_p50": ms(b_ttft), "per_token_p50": ms(b_tok),
                          "longest_gap_p50": ms(b_gap)},
        "r1serve_http_ms": {"ttft_p50": ms(o_ttft), "per_token_p50": ms(o_tok),
                            "longest_gap_p50": ms(o_gap)},
        "engine_in_process_ms": {"ttft_p50": ms(l_ttft), "per_token_p50": ms(l_tok),
                                 "longest_gap_p50": ms(l_gap)},
        "floor_added_ms": {"ttft": ms(floor[0]), "per_token": ms(floor[1])},
        "r1serve_added_ms": {"ttft": ms(added[0]), "per_token": ms(added[1])},
        "ratio_ttft": round(added[0] / floor[0], 2) if floor[0] > 0 else None,
        "ratio_per_token": round(added[1] / floor[1], 2) if floor[1] > 0 else None,
    }))


if __name__ == "__main__":
    main()
