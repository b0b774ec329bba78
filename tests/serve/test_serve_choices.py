"""Several choices and prompt lists through the live Serve app, with each request router: one
HTTP request becomes many engine requests, and every one of them must be answered."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import openai
import pytest

from cluster.local_cluster import free_port
from serve.api.protocol import MAX_N
from serve.config import R1ServeConfig
from tests.live_app import live_app

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module", params=["prefix_aware", "power_of_two"])
def app(request, tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 256},
        "engine": {"devices_per_node": 1, "kv_pages": 256, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 16},
        "router": {"policy": request.param},
        "app_name": f"r1serve-choices-{request.param}",
    })
    with live_app(config) as url:
        yield url


def sse(url: str, path: str, body: dict) -> tuple[list[dict], bool]:
    """A streamed response's chunks, and whether it ended with [DONE]."""
    chunks, done = [], False
    with httpx.stream("POST", f"{url}/v1/{path}", json={**body, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                assert not done, "an event after [DONE]"
                if data == "[DONE]":
                    done = True
                else:
                    chunks.append(json.loads(data))
    return chunks, done


def finishes(chunks: list[dict]) -> dict[int, str]:
    return {c["index"]: c["finish_reason"] for ch in chunks for c in ch.get("choices", ())
            if c.get("finish_reason")}


def test_every_choice_of_every_prompt_is_answered(app):
    c = openai.OpenAI(base_url=f"{app}/v1", api_key="none", max_retries=0, timeout=60)

    def chat_n_max():
        r = c.chat.completions.create(model="deepseek-r1", messages=MESSAGES, max_tokens=2,
                                      n=MAX_N)
        assert [ch.index for ch in r.choices] == list(range(MAX_N))
        assert all(ch.finish_reason == "length" for ch in r.choices)
        assert r.usage.completion_tokens == 2 * MAX_N

    def prompt_list():
        r = c.completions.create(model="deepseek-r1", prompt=["a", "b"], max_tokens=2)
        assert [ch.index for ch in r.choices] == [0, 1]
        assert all(ch.finish_reason == "length" for ch in r.choices)

    def prompts_times_n():
        r = c.completions.create(model="deepseek-r1", prompt=["a", "b", "c"], n=3,
                                 max_tokens=2)
        assert [ch.finish_reason for ch in r.choices] == ["length"] * 9

    def streamed_chat_n():
        chunks, done = sse(app, "chat/completions",
                           {"model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 2,
                            "n": 4})
        assert done and finishes(chunks) == {i: "length" for i in range(4)}

    def streamed_prompts_times_n():
        chunks, done = sse(app, "completions", {"model": "deepseek-r1", "prompt": ["a", "b"],
                                                "n": 2, "max_tokens": 2})
        assert done and finishes(chunks) == {i: "length" for i in range(4)}

    cases = [chat_n_max, prompt_list, prompts_times_n, streamed_chat_n,
             streamed_prompts_times_n]
    with ThreadPoolExecutor(len(cases)) as pool:  # at once, as clients would send them
        for f in [pool.submit(case) for case in cases]:
            f.result()
    metrics = httpx.get(f"{app}/metrics", timeout=30).text
    assert "r1serve_api_requests_in_flight 0.0" in metrics  # every admission slot came back
