"""A scripted OpenAI-compatible streaming server, run as its own process by the tests.

It streams reasoning chunks, then answer chunks, then a usage chunk, each at a scripted offset
from the moment it received the request, and records with `time.perf_counter()` (the host's
monotonic clock, which the test process shares) when it received each request and when it
handed each chunk to the socket. `GET /_state` returns those records. A process of its own keeps
it off the client's interpreter lock, so its timestamps are not delayed by the client's work.

Usage: python fake_openai_server.py PORT CONFIG_JSON, where the config has "events" (a list of
[offset_s, "reasoning" | "answer", text], or null for max_tokens one-millisecond chunks), "usage"
("full", "plain" or "none"), "api_key" and "models".
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

CACHE_BLOCK = 512


class FakeOpenAI:
    def __init__(self, config: dict[str, Any]) -> None:
        self.events = config.get("events")
        self.usage = config.get("usage", "full")
        self.api_key = config.get("api_key")
        self.models = config.get("models", ["r1"])
        self.logs: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen_prefixes: set[tuple[str, ...]] = set()

    def script(self, body: dict[str, Any]) -> list[list]:
        if self.events is not None:
            return self.events
        n = int(body.get("max_tokens", 4))
        half = max(1, n // 2)
        return [[0.002 + 0.001 * i, "reasoning" if i < half else "answer", f" w{i}"]
                for i in range(n)]

    def authorized(self, request: web.Request) -> bool:
        return self.api_key is None or \
            request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def models_(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.json_response({"object": "list",
                                  "data": [{"id": m, "object": "model"} for m in self.models]})

    async def metrics(self, request: web.Request) -> web.Response:
        text = ("# TYPE fake_requests counter\n"
                f"fake_requests_total {len(self.logs)}\n"
                "# TYPE fake_running gauge\n"
                f"fake_running {self.in_flight}\n")
        return web.Response(text=text, content_type="text/plain")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response({"logs": self.logs, "max_in_flight": self.max_in_flight})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        received = time.perf_counter()
        if not self.authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        log: dict[str, Any] = {"received": received, "body": body, "writes": [], "done": None}
        self.logs.append(log)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.stream(request, body, log)
        finally:
            self.in_flight -= 1

    async def stream(self, request: web.Request, body: dict[str, Any],
                     log: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = self.script(body)
        for offset, kind, text in events:
            delay = log["received"] + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = "reasoning_content" if kind == "reasoning" else "content"
            data = sse({"choices": [{"index": 0, "delta": {key: text}, "finish_reason": None}]})
            # Stamped just before the write: the client cannot have the chunk earlier.
            log["writes"].append(time.perf_counter())
            await resp.write(data)
        await resp.write(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
        usage = self.usage_of(body, events)
        if usage is not None:
            await resp.write(sse({"choices": [], "usage": usage}))
        log["done"] = time.perf_counter()
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def usage_of(self, body: dict[str, Any], events: list[list]) -> dict[str, Any] | None:
        if self.usage == "none":
            return None
        # A whitespace "tokenizer": one token per word, no chat template.
        words = tuple(w for m in body["messages"] for w in m["content"].split())
        usage: dict[str, Any] = {"prompt_tokens": len(words), "completion_tokens": len(events),
                                 "total_tokens": len(words) + len(events)}
        if self.usage == "full":
            usage["completion_tokens_details"] = {
                "reasoning_tokens": sum(e[1] == "reasoning" for e in events)}
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached(words)}
        return usage

    def cached(self, words: tuple[str, ...]) -> int:
        """Block-aligned prefix caching: the longest run of whole blocks seen before."""
        cached = 0
        for end in range(CACHE_BLOCK, len(words) + 1, CACHE_BLOCK):
            if words[:end] in self.seen_prefixes:
                cached = end
            self.seen_prefixes.add(words[:end])
        return cached


def sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def main() -> None:
    port, config = int(sys.argv[1]), json.loads(sys.argv[2])
    server = FakeOpenAI(config)
    app = web.Application()
    app.router.add_get("/v1/models", server.models_)
    app.router.add_get("/metrics", server.metrics)
    app.router.add_get("/_state", server.state)
    app.router.add_post("/v1/chat/completions", server.chat)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
