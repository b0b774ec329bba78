"""A client that goes away takes its engine requests with it: the reference engine's pages
return to the free list and its scheduler goes idle, whether the response was streamed or
not, and the ingress's in-flight counts return to zero."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from serve.api.engine_client import LocalEngineClient
from serve.api.ingress import ApiSettings, build_openai_app
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
    return all(s.allocator.num_free == s.allocator.num_total and not s.has_work()
               for s in schedulers(engine))


def ingress_idle(server) -> bool:
    metrics = server.app.state.metrics
    return (server.app.state.admission.in_flight == 0
            and metrics.in_flight._value.get() == 0 and metrics.waiting._value.get() == 0)


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
