"""A rank of the live app's expert-parallel engine dies mid-stream: the client gets an error
event at once (a stable message and a request id, none of Ray's internals), and the app
serves again once Serve has replaced the replica."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx2 as httpx
import pytest
import ray

from cluster.local_cluster import free_port
from serve.config import R1ServeConfig
from tests.live_app import live_app

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Count to a thousand."}]


@pytest.fixture(scope="module")
def app(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 512},
        "engine": {"devices_per_node": 2, "ep_size": 2, "kv_pages": 128, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 400},
        "app_name": "r1serve-rank-death",
    })
    with live_app(config) as url:
        yield url


def rank_pids() -> list[int]:
    """This Ray's rank actor processes: the raylet's children titled `ray::RankActor`."""
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == raylet and title.startswith(b"ray::RankActor"):
            pids.append(int(proc.name))
    return pids


def test_a_rank_killed_mid_stream(app):
    body = {"model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 400, "stream": True,
            "ignore_eos": True}
    events: list[dict] = []
    done = False
    with httpx.stream("POST", f"{app}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        lines = r.iter_lines()
        while len(events) < 3:  # the stream is under way
            line = next(lines)
            if line.startswith("data: {"):
                events.append(json.loads(line.removeprefix("data: ")))
        pids = rank_pids()
        assert len(pids) == 2
        killed_at = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        for line in lines:
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: {"):
                events.append(json.loads(line.removeprefix("data: ")))
                if "error" in events[-1]:
                    error_after_s = time.monotonic() - killed_at
    error = events[-1]["error"]
    assert done and error["code"] == "engine_unavailable"
    assert error_after_s < 1.0, error_after_s
    assert request_id in error["message"]
    assert not any(s in error["message"] for s in ("Actor", "pid", "namespace", "192.", "127."))

    # The app serves again once Serve has replaced the replica; until then a request either
    # waits for it or gets a 503 that says when to retry.
    while True:
        r = httpx.post(f"{app}/v1/chat/completions", timeout=120, json={
            "model": "deepseek-r1", "messages": MESSAGES, "max_tokens": 2})
        if r.status_code == 200:
            break
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        assert time.monotonic() - killed_at < 180
        time.sleep(0.5)
    serving_again_s = time.monotonic() - killed_at
    print(f"error event {error_after_s:.2f} s after the kill; serving again after "
          f"{serving_again_s:.1f} s")
