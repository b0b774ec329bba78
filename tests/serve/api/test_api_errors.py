"""Every error over HTTP is an OpenAI error object with the right status: bad input 400 (naming
the field), 401, 404, 429 with Retry-After, 408, 503; a 500 only for a genuine bug."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest

from serve.api.api_settings import ApiSettings
from serve.api.engine_client import LocalEngineClient
from serve.api.ingress import build_openai_app
from serve.engine.base import EngineStats, GenerationRequest, TokenDelta, Usage
from serve.engine.reference.engine import EngineConfig, ReferenceEngine
from serve.errors import EngineDeadError

SERVED = "deepseek-r1-tiny"
SETTINGS = ApiSettings(served_model_name=SERVED, context_length=256, max_tokens_cap=64)
HI = [{"role": "user", "content": "hi"}]
# What Ray says of a dead actor, and no client should read.
LEAK = ("ActorDiedError: actor_id=5f2a pid=4242 namespace=serve ip=10.0.0.7; the worker was "
        "killed by the OOM killer: see Ray's out-of-memory docs")
INTERNALS = ("actor_id", "pid=", "namespace", "10.0.0.7", "OOM", "memory")


class FakeClient:
    """A scriptable engine: blocks until `gate` opens, can be dead, can fail mid-stream."""

    def __init__(self, *, dead: bool = False, bug: bool = False, fail_after: int | None = None,
                 tokens: int = 3) -> None:
        self.gate = threading.Event()
        self.dead, self.bug, self.fail_after, self.tokens = dead, bug, fail_after, tokens
        self.started = 0
        self.aborted: list[str] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        if self.dead:
            raise EngineDeadError(f"reference engine stopped: {LEAK}")
        if self.bug:
            raise RuntimeError("a bug in the engine client")
        self.started += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        for i in range(self.tokens):
            if i == self.fail_after:
                raise EngineDeadError("the engine died mid-stream")
            last = i == self.tokens - 1
            yield TokenDelta(request.request_id, (100 + i,), f"t{i} ",
                             finish_reason="length" if last else None,
                             usage=Usage(len(request.prompt_token_ids), self.tokens, 0)
                             if last else None)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> None:
        if self.dead:
            raise EngineDeadError(f"reference engine stopped: {LEAK}")

    async def replica_stats(self) -> dict[str, EngineStats]:
        return {}


def start(serve_app, tokenizer, client: FakeClient | None = None, hold: bool = False,
          **settings):
    """Serve a fake engine; `hold` keeps its requests waiting until `client.gate` opens."""
    client = client or FakeClient()
    if not hold:
        client.gate.set()
    app = build_openai_app(client, tokenizer, dataclasses.replace(SETTINGS, **settings))
    return serve_app(app), client


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_field_and_unhonourable_values_are_400_naming_them(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer)
    client = server.client()
    cases = [({"extra_body": {"temprature": 0.5}}, "temprature"),
             ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
             ({"presence_penalty": 0.5}, "presence_penalty"),
             ({"response_format": {"type": "json_object"}}, "response_format"),
             ({"logit_bias": {"42": 10}}, "logit_bias"),
             ({"temperature": 5.0}, "temperature")]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=SERVED, messages=HI, **fields)
        err = error_of(e.value)
        assert err["param"] == param and param in err["message"]
        assert err["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=SERVED, prompt="x", echo=True)
    assert error_of(e.value)["param"] == "echo"


def test_malformed_bodies_are_400(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer)
    url = f"{server.url}/v1/chat/completions"
    for content in (b"{not json", b"[1, 2]", b""):
        r = httpx2.post(url, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, content
        assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx2.post(url, json={"model": SERVED})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_limits_are_400_naming_the_numbers(serve_app, tiny_tokenizer):
    server, fake = start(serve_app, tiny_tokenizer)
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=SERVED, messages=HI, max_tokens=65)
    err = error_of(e.value)
    assert err["param"] == "max_tokens" and "64" in err["message"]
    long = [{"role": "user", "content": "word " * 230}]
    prompt_len = len(tiny_tokenizer.apply_chat_template(long, add_generation_prompt=True))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=SERVED, messages=long, max_tokens=60)
    err = error_of(e.value)
    assert err["code"] == "context_length_exceeded"
    assert f"({prompt_len} tokens)" in err["message"] and "(60)" in err["message"]
    assert "256" in err["message"]
    assert fake.started == 0  # refused before reaching an engine


def test_engine_context_errors_are_400_too(serve_app, tiny_fp32_dir):
    # The ingress allows more than the engine does; the engine's refusal still is a 400.
    engine = ReferenceEngine.from_checkpoint(tiny_fp32_dir, EngineConfig(kv_pages=64,
                                                                         max_model_len=128))
    try:
        server = serve_app(build_openai_app(LocalEngineClient(engine), engine.tokenizer,
                                            ApiSettings(SERVED, 100_000, 100_000)))
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as e:
                r = server.client().chat.completions.create(model=SERVED, messages=HI,
                                                            max_tokens=500, stream=stream)
                list(r) if stream else None
            err = error_of(e.value)
            assert err["code"] == "context_length_exceeded" and "max_tokens (500)" in \
                err["message"] and "128" in err["message"]
    finally:
        asyncio.run(engine.shutdown())


def test_api_keys_401(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer, api_keys=frozenset({"sk-good", "sk-other"}))
    assert server.client("sk-good").chat.completions.create(model=SERVED, messages=HI)
    assert server.client("sk-other").models.list().data[0].id == SERVED
    with pytest.raises(openai.AuthenticationError) as e:
        server.client("sk-bad").chat.completions.create(model=SERVED, messages=HI)
    assert error_of(e.value)["code"] == "invalid_api_key"
    # The key is checked before the body: a bad body without a key is still a 401.
    r = httpx2.post(f"{server.url}/v1/chat/completions", content=b"{oops")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx2.get(f"{server.url}/v1/models").status_code == 401
    assert httpx2.get(f"{server.url}/health").status_code == 200  # probes need no key


def test_unknown_model_and_route_404(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer)
    with pytest.raises(openai.NotFoundError) as e:
        server.client().chat.completions.create(model="gpt-4", messages=HI)
    err = error_of(e.value)
    assert err["param"] == "model" and err["code"] == "model_not_found"
    assert SERVED in err["message"]
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve("gpt-4")
    r = httpx2.get(f"{server.url}/v1/nothing-here")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_over_max_in_flight_is_429_with_retry_after(serve_app, tiny_tokenizer, wait_until):
    server, fake = start(serve_app, tiny_tokenizer, max_in_flight=1, hold=True)
    results = []
    first = threading.Thread(target=lambda: results.append(
        server.client().chat.completions.create(model=SERVED, messages=HI)))
    first.start()
    try:
        assert wait_until(lambda: fake.started == 1)
        with pytest.raises(openai.RateLimitError) as e:
            server.client().chat.completions.create(model=SERVED, messages=HI)
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert error_of(e.value)["code"] == "rate_limit_exceeded"
    finally:
        fake.gate.set()
        first.join(timeout=10)
    assert results and results[0].choices[0].message.reasoning_content == "t0 t1 t2 "
    # The slot is free again.
    assert server.client().chat.completions.create(model=SERVED, messages=HI)


def test_dead_engine_is_503_with_retry_after_and_no_internals(serve_app, tiny_tokenizer,
                                                              caplog):
    server, _ = start(serve_app, tiny_tokenizer, client=FakeClient(dead=True))
    r = httpx2.get(f"{server.url}/health")
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as e:
            server.client().chat.completions.create(model=SERVED, messages=HI, stream=stream)
        assert e.value.status_code == 503 and int(e.value.response.headers["retry-after"]) >= 1
        message = error_of(e.value)["message"]
        rid = e.value.response.headers["x-request-id"]
        assert rid in message and "retry" in message
        assert not any(s in message for s in INTERNALS)
        # operators find what happened under the id the client was given
        assert any(rid in r.getMessage() and "actor_id=" in r.getMessage()
                   for r in caplog.records)


def test_timeout_is_408_and_aborts(serve_app, tiny_tokenizer, wait_until):
    server, fake = start(serve_app, tiny_tokenizer, request_timeout_s=0.3, hold=True)
    with pytest.raises(openai.APIStatusError) as e:
        server.client().chat.completions.create(model=SERVED, messages=HI)
    assert e.value.status_code == 408
    assert "request_timeout_s" in error_of(e.value)["message"]
    assert wait_until(lambda: len(fake.aborted) == 1)


def test_engine_failure_mid_stream_is_an_error_event(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer, client=FakeClient(fail_after=2))
    stream = server.client().chat.completions.create(model=SERVED, messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="retry shortly"):
        list(stream)
    r = httpx2.post(f"{server.url}/v1/chat/completions",
                    json={"model": SERVED, "messages": HI, "stream": True},
                    headers={"x-request-id": "client-chosen-7"})
    events = [line for line in r.text.split("\n\n") if line]
    assert '"engine_unavailable"' in events[-2] and events[-1] == "data: [DONE]"
    assert "client-chosen-7" in events[-2] and "mid-stream" not in events[-2]


def test_bugs_are_500_without_details(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer, client=FakeClient(bug=True))
    with pytest.raises(openai.InternalServerError) as e:
        server.client().chat.completions.create(model=SERVED, messages=HI)
    err = error_of(e.value)
    assert e.value.status_code == 500 and err["type"] == "server_error"
    assert "a bug" not in err["message"]
    assert e.value.response.headers["x-request-id"] in err["message"]


def test_lone_surrogates_are_400_naming_the_field(serve_app, tiny_tokenizer):
    server, fake = start(serve_app, tiny_tokenizer)
    url = f"{server.url}/v1/chat/completions"
    body = (b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
            % SERVED.encode())
    r = httpx2.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "messages[0].content" and "surrogate" in err["message"]
    # even where the message quotes what was sent: a 400, never a 500
    r = httpx2.post(url, content=b'{"model": "m", "messages": [{"role": "user", "content": '
                    b'"hi"}], "te\\udc00mp": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"]
    assert fake.started == 0


def test_bodies_that_are_not_json_say_why(serve_app, tiny_tokenizer):
    server, _ = start(serve_app, tiny_tokenizer)
    url = f"{server.url}/v1/chat/completions"
    r = httpx2.post(url, content=b'{"model": "m"}', headers={"content-type": "text/plain"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == "invalid_content_type"
    assert "application/json" in err["message"] and "text/plain" in err["message"]
    for content, why in ((b'{"model": "\xff\xfe"}', "UTF-8"),
                         (b"[" * 100_000 + b"]" * 100_000, "deep")):
        r = httpx2.post(url, content=content, headers={"content-type": "application/json"})
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "invalid_json" and why in err["message"]
