"""Serve's HTTP proxy under `r1serve`'s start: a connection that sends nothing, or half a
request head, is closed once the header timeout passes, while requests (and idle kept-alive
connections) are served as before."""

from __future__ import annotations

import socket
import time

import pytest
from ray import serve

from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

pytestmark = pytest.mark.slow

TIMEOUT_S = 2.0
HEALTH = b"GET /health HTTP/1.1\r\nHost: r1serve\r\n\r\n"


@pytest.fixture(scope="module")
def port(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 128},
        "engine": {"devices_per_node": 1, "kv_pages": 32, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 8},
        "app_name": "r1serve-header-timeout",
    })
    with pytest.MonkeyPatch.context() as env, local_ray(1, cpus_per_node=2):
        env.setenv("R1SERVE_HTTP_HEADER_TIMEOUT_S", str(TIMEOUT_S))
        try:
            start_app(config)
            wait_healthy(config, timeout_s=240, progress=lambda _: None)
            yield config.api.port
        finally:
            serve.shutdown()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S + 10)


def read_until_closed(s: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long after the call it closed."""
    began, data = time.monotonic(), b""
    while chunk := s.recv(4096):
        data += chunk
    return data, time.monotonic() - began


def read_response(s: socket.socket) -> bytes:
    """One whole response, sized by content-length or chunked, from a kept-alive connection."""
    data = b""
    while not complete(data):
        chunk = s.recv(4096)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    return data


def complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return body.endswith(b"0\r\n\r\n")


def test_silent_and_half_sent_connections_are_closed(port):
    silent, half = connect(port), connect(port)
    half.sendall(HEALTH[:30])  # the request line and part of a header, then nothing
    began = time.monotonic()
    silent_data, _ = read_until_closed(silent)
    half_data, _ = read_until_closed(half)
    took = time.monotonic() - began
    assert silent_data == b""  # nothing was asked, nothing is answered
    assert half_data.startswith(b"HTTP/1.1 408 ")
    assert TIMEOUT_S - 0.5 < took < TIMEOUT_S + 5


def test_requests_are_served_and_kept_alive_past_the_header_timeout(port):
    with connect(port) as s:
        for piece in (HEALTH[:20], HEALTH[20:]):  # a head in two writes, well within time
            s.sendall(piece)
            time.sleep(0.2)
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT_S + 1)  # idle between requests is the keep-alive timer's (90 s)
        s.sendall(HEALTH)
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
        s.sendall(HEALTH[:30])  # the next head stalls: its own deadline, from its first byte
        data, took = read_until_closed(s)
        assert data.startswith(b"HTTP/1.1 408 ") and took < TIMEOUT_S + 5
