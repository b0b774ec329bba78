"""A client that goes away takes its engine requests with it: the reference engine's pages
return to the free list and its scheduler goes idle, whether the response was streamed or
not, and the ingress's in-flight counts return to zero."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

from serve.api.api_settings import ApiSettings
from serve.api.engine_client import LocalEngineClient
from serve.api.ingress import build_openai_app
from serve.engine.base import EngineStats, GenerationRequest, TokenDelta
from serve.engine.reference.engine import EngineConfig, ReferenceEngine

SERVED = "deepseek-r1-tiny"
# Long enough that no request finishes on its own while the test runs.
LONG = {"model": SERVED, "messages": [{"role": "user", "content": "Count to a million."}],
        "max_tokens": 900, "ignore_eos": True, "temperature": 1.0}


@pytest.fixture(scope="module")
def engine(tiny_fp32_dir):
    # No prefix cache, so a freed request's pages go straight back to the free list.
    engine = ReferenceEngine.from_checkpoint(
        tiny_fp32_dir, EngineConfig(kv_pages=256, max_model_len=1024, prefix_cache=False))
    yield engine
    asyncio.run(engine.shutdown())


@pytest.fixture
def server(engine, serve_app):
    settings = ApiSettings(served_model_name=SERVED, context_length=1024, max_tokens_cap=1000)
    return serve_app(build_openai_app(LocalEngineClient(engine), engine.tokenizer, settings))


def schedulers(engine: ReferenceEngine) -> list:
    """Every rank's scheduler (one for an engine without data-parallel ranks)."""
    many = getattr(engine, "schedulers", None)
    return list(many) if many is not None else [engine.scheduler]


def engine_idle(engine: ReferenceEngine) -> bool:
    return all(s.kv_cache.free_pages == s.kv_cache.total_pages and not s.has_work()
               for s in schedulers(engine))


def ingress_idle(server) -> bool:
    text = httpx2.get(f"{server.url}/metrics").text
    return (server.app.state.admission.in_flight == 0
            and "r1serve_api_requests_in_flight 0.0" in text
            and "r1serve_api_queue_depth 0.0" in text)


def test_streaming_client_disconnect_aborts_and_frees_pages(server, engine, wait_until):
    for n in (1, 2):
        with httpx2.Client(timeout=30) as http:
            with http.stream("POST", f"{server.url}/v1/chat/completions",
                             json={**LONG, "stream": True, "n": n}) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                events = [next(lines) for _ in range(8)]
                assert all(e.startswith("data: {") or e == "" for e in events)
                # Mid-stream, the engine holds the request's pages.
                assert not engine_idle(engine)
            # Leaving the block closes the connection mid-stream.
        assert wait_until(lambda: engine_idle(engine)), "the engine request was not aborted"
        assert wait_until(lambda: ingress_idle(server))


def test_non_streaming_client_disconnect_aborts_and_frees_pages(server, engine, wait_until):
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.post(f"{server.url}/v1/chat/completions", json=LONG, timeout=0.5)
    assert wait_until(lambda: engine_idle(engine)), "the engine request was not aborted"
    assert wait_until(lambda: ingress_idle(server))
    text = httpx2.get(f"{server.url}/metrics").text
    assert 'r1serve_api_requests_total{endpoint="chat",status="499"} 1.0' in text


class WaitingClient:
    """An engine whose requests never produce a token: they wait in its queue."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.closed: list[str] = []
        self.aborted: list[str] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        self.started.append(request.request_id)
        try:
            await asyncio.Event().wait()
            yield TokenDelta(request.request_id, (), "")  # never reached
        finally:
            self.closed.append(request.request_id)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> None:
        pass

    async def replica_stats(self) -> dict[str, EngineStats]:
        return {}


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_before_the_first_token_aborts(serve_app, tiny_tokenizer, wait_until,
                                                  stream):
    client = WaitingClient()
    settings = ApiSettings(served_model_name=SERVED, context_length=1024, max_tokens_cap=1000)
    server = serve_app(build_openai_app(client, tiny_tokenizer, settings))
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.post(f"{server.url}/v1/chat/completions", timeout=0.5,
                    json={**LONG, "stream": stream, "n": 2})
    assert len(client.started) == 2
    assert wait_until(lambda: sorted(client.closed) == sorted(client.started))
    assert wait_until(lambda: sorted(client.aborted) == sorted(client.started))
    assert wait_until(lambda: ingress_idle(server))


class ProxyDropsRequest:
    """The app behind a proxy that drops the request once its body is through: reading the
    connection then raises, as Ray Serve's relay does (TaskCancelledError) when its client
    has gone."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        body_done = False

        async def relay():
            nonlocal body_done
            if body_done:
                raise RuntimeError("TaskCancelledError: the request was cancelled")
            message = await receive()
            body_done = not message.get("more_body", False)
            return message

        await self.app(scope, relay, send)


@pytest.mark.parametrize("stream", [False, True])
def test_a_dropped_connection_is_a_499_not_a_500(serve_app, tiny_tokenizer, wait_until,
                                                 caplog, stream):
    client = WaitingClient()
    settings = ApiSettings(served_model_name=SERVED, context_length=1024, max_tokens_cap=1000)
    app = build_openai_app(client, tiny_tokenizer, settings)
    server = serve_app(ProxyDropsRequest(app))
    r = httpx2.post(f"{server.url}/v1/chat/completions", timeout=10,
                    json={**LONG, "stream": stream})
    assert r.status_code == 499  # (a real proxy has no one to send it to)
    assert wait_until(lambda: client.aborted == client.started != [])
    text = httpx2.get(f"{server.url}/metrics").text
    assert 'r1serve_api_requests_total{endpoint="chat",status="499"} 1.0' in text
    assert 'status="500"' not in text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
