"""Whether every response ends as the protocol says it must, under many concurrent streams: an
HTTP 200 stream ends with a finish_reason on every choice and then `data: [DONE]`, or with an
error event and then `data: [DONE]`; a non-streamed 200 has a finish_reason on every choice.
Anything else that came with a 200 is counted as truncated: the client was told all went well
and got less than the whole answer. Starts the tiny model on a local Ray, sends one burst of
requests at once, prints one JSON line of outcome counts.

    python -m benchmarks.stream_completeness [--streams 300] [--plain 20] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from typing import Any

import aiohttp

FINISHED, ERROR_EVENT, TRUNCATED = "finished", "error_event", "truncated"


def judge_stream(lines: list[bytes], choices: int) -> str:
    """The outcome of a 200 stream from its raw SSE lines."""
    events = [line[5:].strip() for line in lines if line.startswith(b"data:")]
    if not events or events[-1] != b"[DONE]" or events.count(b"[DONE]") != 1:
        return TRUNCATED
    finished: set[int] = set()
    for data in events[:-1]:
        chunk = json.loads(data)
        if "error" in chunk:
            return ERROR_EVENT
        finished.update(c["index"] for c in chunk.get("choices") or () if c.get("finish_reason"))
    return FINISHED if finished == set(range(choices)) else TRUNCATED


def judge_body(body: dict[str, Any], choices: int) -> str:
    """The outcome of a non-streamed 200 from its JSON body."""
    got = body.get("choices") or []
    done = {c["index"] for c in got if c.get("finish_reason")}
    return FINISHED if len(got) == choices and done == set(range(choices)) else TRUNCATED


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    stream, choices = body.get("stream", False), body.get("n", 1)
    try:
        async with session.post(url, json=body) as r:
            if r.status != 200:
                await r.read()
                return f"http_{r.status}"
            try:
                if stream:
                    return judge_stream([line async for line in r.content], choices)
                return judge_body(await r.json(), choices)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ValueError):
                return TRUNCATED  # the 200 went out, the body never ended as it must
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as e:
        return f"client_{type(e).__name__}"


def request_bodies(streams: int, plain: int, max_tokens: int) -> list[dict[str, Any]]:
    """`streams` streamed and `plain` non-streamed chat requests; every fourth asks for two
    choices, so that each choice's end is checked, and half the streams ask for usage. Prompts
    differ from their eighth token on, so that they share no cached page and each needs its own
    KV pages."""
    bodies = []
    for i in range(streams + plain):
        messages = [{"role": "user",
                     "content": f"Request {i}: count to ten, slowly, and explain each step."}]
        body: dict[str, Any] = {"model": "deepseek-r1", "messages": messages,
                                "max_tokens": max_tokens, "temperature": 0.7, "seed": i,
                                "n": 2 if i % 4 == 3 else 1}
        if i < streams:
            body["stream"] = True
            if i % 2:
                body["stream_options"] = {"include_usage": True}
        bodies.append(body)
    return bodies


async def burst(base_url: str, streams: int, plain: int, max_tokens: int,
                timeout_s: float = 300.0) -> dict[str, Counter[str]]:
    """Send every request at once; outcome counts for the streamed and the plain ones."""
    bodies = request_bodies(streams, plain, max_tokens)
    connector = aiohttp.TCPConnector(limit=0)  # one connection per request, all at once
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        url = f"{base_url}/v1/chat/completions"
        outcomes = await asyncio.gather(*(_one(session, url, b) for b in bodies))
    counts: dict[str, Counter[str]] = {"stream": Counter(), "plain": Counter()}
    for body, outcome in zip(bodies, outcomes, strict=True):
        counts["stream" if body.get("stream") else "plain"][outcome] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    from ray import serve

    from benchmarks.common import tiny_checkpoint
    from cluster.local_cluster import free_port, local_ray
    from serve.config import R1ServeConfig
    from serve.runner import start_app, wait_healthy

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--plain", type=int, default=20, help="non-streamed requests beside them")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--kv-pages", type=int, default=512,
                   help="a pool smaller than the burst needs makes requests wait and preempt")
    p.add_argument("--checkpoint", help="a tiny checkpoint directory (default: a fresh one)")
    p.add_argument("--timeout-s", type=float, default=600.0)
    args = p.parse_args(argv)
    total = args.streams + args.plain
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_checkpoint(args.checkpoint)), "context_length": 256},
        "engine": {"devices_per_node": 1, "kv_pages": args.kv_pages, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": args.max_tokens,
                "max_in_flight": max(total, 1)},  # every request admitted: none turned away
        "app_name": "bench-stream-completeness"})
    with local_ray(1, cpus_per_node=os.cpu_count() or 2):
        try:
            start_app(config)
            wait_healthy(config, timeout_s=300, progress=lambda _: None)
            began = time.perf_counter()
            counts = asyncio.run(burst(f"http://127.0.0.1:{config.api.port}", args.streams,
                                       args.plain, args.max_tokens, args.timeout_s))
            seconds = time.perf_counter() - began
        finally:
            serve.shutdown()
    print(json.dumps({"streams": args.streams, "plain": args.plain,
                      "max_tokens": args.max_tokens, "kv_pages": args.kv_pages,
                      "seconds": round(seconds, 1),
                      **{f"{kind}_outcomes": dict(c) for kind, c in counts.items()}}),
          flush=True)
    return 0 if all(k in (FINISHED, ERROR_EVENT) for c in counts.values() for k in c) else 1


if __name__ == "__main__":
    raise SystemExit(main())
