"""`HeaderTimeoutProtocol` in a plain uvicorn server (no Ray): the deadline on request heads,
and how the timeout is configured."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from cluster.local_cluster import free_port
from serve.errors import ConfigError
from serve.header_timeout import HeaderTimeoutProtocol, install, proxy_env
from serve.settings import Settings

TIMEOUT_S = 0.5
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port():
    port = free_port()
    protocol = type("Protocol", (HeaderTimeoutProtocol,), {"header_timeout_s": TIMEOUT_S})
    server = uvicorn.Server(uvicorn.Config(ok_app, host="127.0.0.1", port=port, http=protocol,
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(10)


def closed_after(s: socket.socket) -> tuple[bytes, float]:
    began, data = time.monotonic(), b""
    while chunk := s.recv(4096):
        data += chunk
    return data, time.monotonic() - began


def test_a_head_must_arrive_in_time(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as half:
        half.sendall(REQUEST[:20])
        assert closed_after(silent)[0] == b""
        data, took = closed_after(half)
        assert data.startswith(b"HTTP/1.1 408 ") and took < TIMEOUT_S + 1


def test_kept_alive_connections_idle_on_the_keep_alive_timer(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(2):
            s.sendall(REQUEST)
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT_S * 2)


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv("R1SERVE_HTTP_HEADER_TIMEOUT_S", raising=False)
    assert Settings.from_env().http_header_timeout_s == 20.0
    monkeypatch.setenv("R1SERVE_HTTP_HEADER_TIMEOUT_S", "7.5")
    assert Settings.from_env().http_header_timeout_s == 7.5
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("R1SERVE_HTTP_HEADER_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match="R1SERVE_HTTP_HEADER_TIMEOUT_S"):
            Settings.from_env()
    env = proxy_env(7.5)
    assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "serve.header_timeout:proxy_callback"
    assert env["R1SERVE_HTTP_HEADER_TIMEOUT_S"] == "7.5"


def test_zero_leaves_uvicorn_as_it_is(monkeypatch):
    monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, "auto", "untouched")
    monkeypatch.setattr(HeaderTimeoutProtocol, "header_timeout_s", 20.0)
    install(0)
    assert uvicorn.config.HTTP_PROTOCOLS["auto"] == "untouched"
    install(3)
    assert uvicorn.config.HTTP_PROTOCOLS["auto"] == "serve.header_timeout:HeaderTimeoutProtocol"
    assert HeaderTimeoutProtocol.header_timeout_s == 3
