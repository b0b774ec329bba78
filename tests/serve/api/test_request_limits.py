"""What one large request costs the others: a body over the limit is a 413 before it is parsed,
text too long for the context is refused by its length before it is tokenized, and the
tokenizing that does happen leaves the event loop free for every other request."""

from __future__ import annotations

import socket
import threading
import time

import httpx2
import openai
import pytest

from serve.api.api_settings import ApiSettings, default_body_limit
from serve.api.ingress import build_openai_app
from serve.config import R1ServeConfig
from serve.errors import ConfigError
from tests.serve.api.engine_clients import OneTokenClient

SERVED = "deepseek-r1-tiny"
HI = [{"role": "user", "content": "hi"}]


class CountingTokenizer:
    """The tiny tokenizer, counting (and optionally slowing) what it encodes."""

    def __init__(self, inner, encode_s: float = 0.0) -> None:
        self._inner, self.encode_s, self.encoded_chars = inner, encode_s, 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        self.encoded_chars += len(text)
        time.sleep(self.encode_s)  # a tokenizer busy on a long prompt, holding its thread
        return self._inner.encode(text, add_bos=add_bos)


def start(serve_app, tokenizer, **settings):
    client = OneTokenClient()
    base = {"served_model_name": SERVED, "context_length": 256, "max_tokens_cap": 64}
    app = build_openai_app(client, tokenizer, ApiSettings(**{**base, **settings}))
    return serve_app(app), client


def test_a_body_over_the_limit_is_413_before_it_is_read(serve_app, tiny_tokenizer):
    tokenizer = CountingTokenizer(tiny_tokenizer)
    server, engine = start(serve_app, tokenizer, max_body_bytes=64 * 1024)
    big = [{"role": "user", "content": "word " * 20_000}]  # 100 KB
    with pytest.raises(openai.APIStatusError) as e:
        server.client().chat.completions.create(model=SERVED, messages=big, max_tokens=4)
    assert e.value.status_code == 413
    err = e.value.response.json()["error"]
    assert err["code"] == "request_too_large" and str(64 * 1024) in err["message"]
    assert tokenizer.encoded_chars == 0 and engine.started == 0
    # A body with no declared length is cut off at the limit just the same.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b'{"model": "' + b"m" * 8192
        for _ in range(10):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    # The limit leaves the server serving.
    assert server.client().chat.completions.create(model=SERVED, messages=HI, max_tokens=1)


def test_the_default_limit_follows_the_context_length():
    assert default_body_limit(4096) == 1 << 20  # the floor
    assert default_body_limit(32768) == 4 << 20
    settings = ApiSettings(served_model_name="m", context_length=131072, max_tokens_cap=8)
    assert settings.body_limit == 16 << 20
    config = R1ServeConfig.from_dict({"api": {"max_body_bytes": 2048}})
    assert config.api.max_body_bytes == 2048
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ApiSettings(served_model_name="m", context_length=8, max_tokens_cap=8,
                    max_body_bytes=10)


def test_text_that_cannot_fit_is_refused_before_tokenizing(serve_app, tiny_tokenizer):
    tokenizer = CountingTokenizer(tiny_tokenizer)
    server, engine = start(serve_app, tokenizer)
    longest = tiny_tokenizer.max_token_chars
    text = "x" * (256 * longest)  # at least 256 tokens: no room for output
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=SERVED, messages=[{"role": "user",
                                                                "content": text}])
    err = e.value.response.json()["error"]
    assert (err["code"], err["param"]) == ("context_length_exceeded", "messages")
    assert "characters" in err["message"] and "256" in err["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=SERVED, prompt=["hi", text])
    assert e.value.response.json()["error"]["param"] == "prompt[1]"
    assert tokenizer.encoded_chars <= len("hi") and engine.started == 0


def test_tokenizing_leaves_other_requests_served(serve_app, tiny_tokenizer):
    tokenizer = CountingTokenizer(tiny_tokenizer, encode_s=3.0)
    server, _ = start(serve_app, tokenizer)
    slow = threading.Thread(target=lambda: server.client().chat.completions.create(
        model=SERVED, messages=HI, max_tokens=1))
    slow.start()
    try:
        deadline = time.monotonic() + 10
        while tokenizer.encoded_chars == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        assert httpx2.get(f"{server.url}/v1/models", timeout=10).status_code == 200
        assert time.monotonic() - began < 1.0  # not behind the 3 s of tokenizing
    finally:
        slow.join(timeout=20)
