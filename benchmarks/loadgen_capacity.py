"""How much load one generator worker can offer: streaming requests/s and chunks/s on one core.

A loopback server in its own process (pinned to another core where there is one) streams
pre-encoded SSE chunks, several per write, so that it is cheaper per chunk than the client that
parses them. Three phases:

1. capacity: closed loop at --concurrency, unpaced chunks: requests/s and chunks/s the
   generator sustains (its CPU is the limit);
2. timestamp error: the same concurrency with chunks paced --pace-ms apart; the server stamps
   each chunk just before writing it, and the error is the client's stamp minus the server's;
3. schedule error: open loop (Poisson) at --open-fraction of the measured capacity: how late the
   client sends requests against their due times (`client_queue_s`).

    .venv/bin/python benchmarks/loadgen_capacity.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
from aiohttp import web

from loadtest.arrival import ConcurrencyArrival, RateArrival
from loadtest.endpoint import Endpoint
from loadtest.length_distribution import LengthDistribution
from loadtest.runner import Runner
from loadtest.summary import summarize
from loadtest.workloads import SyntheticReasoning


def serve(port: int, pace_s: float, batch: int) -> None:
    """The loopback server (run in a child process)."""
    stamps: list[list[float]] = []

    def event(key: str, i: int) -> bytes:
        return ("data: " + json.dumps({"choices": [{"index": 0, "delta": {key: f" t{i}"}}]})
                + "\n\n").encode()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = int(body["max_tokens"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = [event("reasoning_content" if i < n // 2 else "content", i) for i in range(n)]
        mine: list[float] = []
        step = 1 if pace_s else batch
        start = time.perf_counter()
        for i in range(0, n, step):
            if pace_s:
                delay = start + i * pace_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                mine.append(time.perf_counter())
            await resp.write(b"".join(events[i:i + step]))
        usage = {"prompt_tokens": 8, "completion_tokens": n,
                 "completion_tokens_details": {"reasoning_tokens": n // 2}}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                         + b"\n\ndata: [DONE]\n\n")
        if pace_s:
            stamps.append(mine)
        return resp

    async def state(_: web.Request) -> web.Response:
        return web.json_response(stamps)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/_stamps", state)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_server(pace_s: float, batch: int, cpu: int | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--serve", str(port), "--pace-ms", str(pace_s * 1e3),
           "--batch", str(batch)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def workload(n: int, chunks: int) -> SyntheticReasoning:
    return SyntheticReasoning(n, LengthDistribution("fixed", 8),
                              LengthDistribution("fixed", chunks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--chunks", type=int, default=200, help="chunks (tokens) per request")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--batch", type=int, default=16, help="server: SSE events per write")
    p.add_argument("--pace-ms", type=float, default=5.0, help="phase 2: ms between chunks")
    p.add_argument("--open-fraction", type=float, default=0.3)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.pace_ms / 1e3, args.batch)
        return
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = cpus[0], (cpus[1] if len(cpus) > 1 else None)
    os.sched_setaffinity(0, {client_cpu})  # the generator gets one core
    print(f"generator on CPU {client_cpu}, server on CPU {server_cpu}; "
          f"{args.chunks} chunks/request, concurrency {args.concurrency}")

    proc, url = start_server(0.0, args.batch, server_cpu)
    try:
        endpoint = Endpoint(url, "bench")
        sessions = workload(args.requests, args.chunks).sessions()
        sched = ConcurrencyArrival(args.concurrency).schedule(sessions)
        records = asyncio.run(Runner(endpoint).run(sched))
        s = summarize(records)
        chunks = sum(len(r.chunk_times_s) for r in records)
        capacity = s.requests_per_s
        print(f"capacity: {s.requests_completed} ok / {s.requests_failed} failed in "
              f"{s.duration_s:.2f} s: {capacity:.0f} requests/s, {chunks / s.duration_s:.0f} "
              f"chunks/s")
        rate = args.open_fraction * capacity
        open_sched = RateArrival(rate, seed=1).schedule(sessions[: int(rate * 10)])
        open_records = asyncio.run(Runner(endpoint).run(open_sched))
        q = np.array([r.client_queue_s for r in open_records]) * 1e3
        print(f"schedule error at {rate:.0f} requests/s open loop ({len(q)} requests): "
              f"sent - due p50 {np.percentile(q, 50):.3f} ms, p99 {np.percentile(q, 99):.3f} ms, "
              f"max {q.max():.3f} ms")
    finally:
        proc.terminate()

    pace = args.pace_ms / 1e3
    proc, url = start_server(pace, 1, server_cpu)
    try:
        n = min(args.requests, 4 * args.concurrency)
        sched = ConcurrencyArrival(args.concurrency).schedule(workload(n, args.chunks).sessions())
        origin = 0.0
        records = asyncio.run(Runner(Endpoint(url, "bench")).run(sched, origin=origin))
        with urllib.request.urlopen(f"{url}/_stamps") as resp:
            server = json.loads(resp.read())
        # Match streams by their first write: each record's chunks to the server's stamps.
        by_first = sorted(server, key=lambda st: st[0])
        mine = sorted((r.chunk_times_s for r in records if r.ok), key=lambda c: c[0])
        errors = np.array([c - w for cs, ws in zip(mine, by_first, strict=False)
                           for c, w in zip(cs, ws, strict=False)]) * 1e3
        paced_rate = args.concurrency / pace
        print(f"timestamp error, {args.concurrency} streams paced {pace * 1e3:g} ms "
              f"(~{paced_rate:.0f} chunks/s offered): client stamp - server stamp p50 "
              f"{np.percentile(errors, 50):.3f} ms, p99 {np.percentile(errors, 99):.3f} ms, "
              f"max {errors.max():.3f} ms over {len(errors)} chunks")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
