"""The whole application on Ray Serve (`build_app`), driven over HTTP with the official
`openai` client: the Serve proxy, the ingress replica and an EP=2 engine replica."""

from __future__ import annotations

import time

import httpx2 as httpx
import openai
import pytest
import ray
from ray import serve

from cluster.local_cluster import free_port
from serve.config import R1ServeConfig
from tests.live_app import live_app

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def app(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 512},
        "engine": {"devices_per_node": 2, "ep_size": 2, "kv_pages": 128, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 256},
        "app_name": "r1serve-test",
    })
    with live_app(config):
        yield config


def client(config) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{config.api.port}/v1", api_key="none",
                         max_retries=0, timeout=60)


def engine_stats(config):
    handle = serve.get_deployment_handle("EngineDeployment", app_name=config.app_name)
    return handle.stats.remote().result(timeout_s=30)[1]


MESSAGES = [{"role": "user", "content": "What is 2 + 2? Think first."}]


def test_chat_through_serve_streams_reasoning_with_usage(app):
    c = client(app)
    full = c.chat.completions.create(model="deepseek-r1", messages=MESSAGES, max_tokens=12,
                                     temperature=0.7, seed=5)
    msg = full.choices[0].message
    reasoning = msg.model_extra["reasoning_content"]
    assert reasoning and msg.content is None  # the random model never closes </think>
    assert full.usage.completion_tokens == 12
    assert full.usage.completion_tokens_details.reasoning_tokens == 12
    chunks = list(c.chat.completions.create(
        model="deepseek-r1", messages=MESSAGES, max_tokens=12, temperature=0.7, seed=5,
        stream=True, stream_options={"include_usage": True}))
    streamed = "".join((ch.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                       for ch in chunks if ch.choices)
    assert streamed == reasoning  # same seed, same text, streamed or not
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_errors_through_serve_are_openai_errors(app):
    c = client(app)
    with pytest.raises(openai.BadRequestError, match="512"):
        c.chat.completions.create(model="deepseek-r1", max_tokens=250,
                                  messages=[{"role": "user", "content": "word " * 400}])
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4", messages=MESSAGES, max_tokens=4)
    r = httpx.get(f"http://127.0.0.1:{app.api.port}/health", timeout=30)
    assert r.status_code == 200


def test_disconnect_through_serve_aborts_and_frees_pages(app):
    body = {"model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 250, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", f"http://127.0.0.1:{app.api.port}/v1/chat/completions",
                      json=body, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = engine_stats(app)
        if s.running == 0 and s.waiting == 0:
            break
        time.sleep(0.2)
    assert s.running == 0 and s.waiting == 0
    assert s.kv_pages_used == 0  # pages of the aborted request went back (or to the cache)


def test_status_command_shows_replicas_and_engine_stats(app, capsys):
    from serve.cli import main

    assert main(["status", "--address", ray.get_runtime_context().gcs_address]) == 0
    out = capsys.readouterr().out
    assert "EngineDeployment" in out and "engine " in out and "KV" in out
    assert "served from cache" in out and "router predicted" in out


def test_status_command_in_a_fresh_shell(app):
    """As an operator runs it beside `r1serve up`: no RAY_AUTH_MODE in the environment, while
    the cluster Ray started wants the token it wrote to ~/.ray/auth_token."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    began = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "serve.cli", "status", "--address",
                          ray.get_runtime_context().gcs_address],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"application {app.app_name}" in res.stdout
    assert time.monotonic() - began < 20  # no retrying a refused token


def test_loadtest_against_the_live_app(app, tmp_path):
    """`r1-loadtest` on a multi-turn workload: every request completes, the reasoning tokens
    are counted from the server's usage, and the server's prefix-cache hits show up."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "loadtest", "--url", f"http://127.0.0.1:{app.api.port}",
         "--workload", "conversation", "--num-requests", "3", "--min-turns", "3",
         "--max-turns", "3", "--system-prompt-tokens", "40", "--think-time-s", "0",
         "--input-dist", "fixed", "--input-mean", "8",
         "--output-dist", "fixed", "--output-mean", "6", "--ignore-eos", "--concurrency", "3",
         "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    s = result["summary"]
    assert s["requests_completed"] == 9 and s["requests_failed"] == 0
    assert s["ttft_s"]["p50"] > 0 and s["e2e_s"]["p99"] >= s["ttft_s"]["p99"]
    assert s["cache_hit_rate"] > 0  # later turns resend the history the engine cached
    assert (out / "summary.md").exists()


def test_hostile_input_through_serve(app):
    """What a careless or hostile client sends gets a 4xx that names the problem, and costs
    the other requests nothing."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"http://127.0.0.1:{app.api.port}"
    big = b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": "' + \
        b"word " * ((8 << 20) // 5) + b'"}]}'
    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        posted = pool.submit(httpx.post, f"{url}/v1/chat/completions", content=big,
                             headers={"content-type": "application/json"}, timeout=60)
        models = httpx.get(f"{url}/v1/models", timeout=30)
        r = posted.result()
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert models.status_code == 200 and time.monotonic() - began < 10
    cases = [(b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": '
              b'"a\\ud800b"}]}', "messages[0].content"),
             (b'{"model": "deepseek-r1", "messages": [{"role": "user", "content": "hi"}], '
              b'"max_tokens": true}', "max_tokens")]
    for body, param in cases:
        r = httpx.post(f"{url}/v1/chat/completions", content=body, timeout=30,
                       headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] == param
        assert r.headers["x-request-id"]


def test_no_stream_ends_silently_under_concurrency(app):
    """Many streams at once: every one that starts 200 ends with each choice's finish_reason,
    or with an error event, and then [DONE]."""
    import asyncio
    import json

    url = f"http://127.0.0.1:{app.api.port}/v1/chat/completions"

    async def one(http, i: int) -> str:
        body = {"model": "deepseek-r1", "max_tokens": 8, "stream": True, "n": 1 + i % 2,
                "messages": [{"role": "user", "content": f"Count to {i}."}]}
        async with http.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                return f"status {r.status_code}"
            finished, error, done = set(), False, False
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                error = error or "error" in chunk
                finished |= {c["index"] for c in chunk.get("choices", ())
                             if c.get("finish_reason")}
            whole = error or finished == set(range(body["n"]))
            return "ok" if whole and done else f"truncated {finished} done={done}"

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(
                max_connections=64)) as http:
            return await asyncio.gather(*(one(http, i) for i in range(48)))

    outcomes = asyncio.run(run())
    assert outcomes.count("ok") == len(outcomes), outcomes
