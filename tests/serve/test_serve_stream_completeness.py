"""Nothing silently truncated: under many concurrent streams through the live Serve app, every
HTTP 200 stream ends with a finish_reason on each choice and `data: [DONE]`, or with an error
event, and every non-streamed 200 has a finish_reason on each choice. The judging and the burst
are the `stream_completeness` benchmark's, which runs the same at larger sizes."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.stream_completeness import (
    ERROR_EVENT,
    FINISHED,
    TRUNCATED,
    burst,
    judge_body,
    judge_stream,
)
from cluster.local_cluster import free_port
from serve.config import R1ServeConfig
from tests.live_app import live_app

STREAMS, PLAIN, MAX_TOKENS = 56, 8, 8


@pytest.fixture(scope="module")
def url(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 128},
        # 64 pages of 16 tokens: a request (29 prompt tokens, 8 out) needs 3 per choice, so
        # about a quarter of the burst's 80 choices run at once and the rest wait for pages
        "engine": {"devices_per_node": 1, "kv_pages": 64, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": MAX_TOKENS},
        "app_name": "r1serve-stream-completeness",
    })
    with live_app(config) as url:
        yield url


@pytest.mark.slow
def test_no_response_under_a_burst_is_silently_truncated(url):
    counts = asyncio.run(burst(url, STREAMS, PLAIN, MAX_TOKENS, timeout_s=120))
    for kind, total in (("stream", STREAMS), ("plain", PLAIN)):
        assert sum(counts[kind].values()) == total
        assert set(counts[kind]) <= {FINISHED, ERROR_EVENT}, counts  # all 200, none cut short
        assert counts[kind][FINISHED] > 0, counts


def sse(*events: str) -> list[bytes]:
    return [f"data: {e}\n".encode() for e in events]


CHOICE = '{{"choices": [{{"index": {i}, "delta": {{}}, "finish_reason": {why}}}]}}'


@pytest.mark.parametrize(("lines", "choices", "outcome"), [
    (sse(CHOICE.format(i=0, why='"length"'), "[DONE]"), 1, FINISHED),
    (sse(CHOICE.format(i=0, why="null"), '{"error": {"message": "x"}}', "[DONE]"), 1,
     ERROR_EVENT),
    (sse(CHOICE.format(i=0, why="null")), 1, TRUNCATED),  # no [DONE]
    (sse(CHOICE.format(i=0, why="null"), "[DONE]"), 1, TRUNCATED),  # no finish_reason
    (sse(CHOICE.format(i=1, why='"stop"'), "[DONE]"), 2, TRUNCATED),  # choice 0 never ended
    (sse(CHOICE.format(i=0, why='"stop"'), "[DONE]", "[DONE]"), 1, TRUNCATED),
])
def test_how_a_stream_is_judged(lines, choices, outcome):
    assert judge_stream(lines, choices) == outcome


def test_how_a_body_is_judged():
    assert judge_body({"choices": [{"index": 0, "finish_reason": "stop"}]}, 1) == FINISHED
    assert judge_body({"choices": [{"index": 0, "finish_reason": None}]}, 1) == TRUNCATED
    assert judge_body({"choices": [{"index": 0, "finish_reason": "stop"}]}, 2) == TRUNCATED
