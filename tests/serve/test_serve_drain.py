"""Draining: a replica being removed finishes its running streams within `drain.deadline_s`,
and past the deadline ends them with a clear error instead of leaving them hanging."""

from __future__ import annotations

import json
import threading
import time

import httpx2 as httpx
import pytest
from ray import serve

from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

pytestmark = pytest.mark.slow



def stream_while_deleting(config, max_tokens: int) -> list[dict]:
    """Start a stream, delete the application after its first chunks, read to the end."""
    body = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "drain me"}],
            "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    events: list[dict] = []
    deleter = None
    with httpx.stream("POST", f"http://127.0.0.1:{config.api.port}/v1/chat/completions",
                      json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[len("data: "):]))
            if len(events) == 3:
                deleter = threading.Thread(target=serve.delete, args=(config.app_name,))
                deleter.start()
    deleter.join(timeout=120)
    return events


def deploy(tiny_fp32_dir, port: int, deadline_s: float):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 4096},
        "engine": {"devices_per_node": 1, "kv_pages": 512},
        "api": {"port": port, "max_tokens_cap": 4000},
        "drain": {"deadline_s": deadline_s},
        "app_name": f"drain-{int(deadline_s)}",
    })
    start_app(config)
    wait_healthy(config, timeout_s=240, progress=lambda _: None)
    return config


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray and one Serve proxy (its port is fixed once Serve starts)."""
    port = free_port()
    with local_ray(1, cpus_per_node=2):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
        serve.shutdown()


def test_removed_replica_finishes_its_running_stream(ray_local, tiny_fp32_dir):
    config = deploy(tiny_fp32_dir, ray_local, deadline_s=60)
    events = stream_while_deleting(config, max_tokens=120)
    finals = [e for e in events if e.get("choices") and e["choices"][0]["finish_reason"]]
    assert finals and finals[-1]["choices"][0]["finish_reason"] == "length"
    assert not any("error" in e for e in events)


def test_past_the_deadline_the_stream_ends_with_a_clear_error(ray_local, tiny_fp32_dir):
    config = deploy(tiny_fp32_dir, ray_local, deadline_s=1)
    t0 = time.monotonic()
    events = stream_while_deleting(config, max_tokens=3900)
    assert time.monotonic() - t0 < 60  # ended, did not hang
    errors = [e["error"] for e in events if "error" in e]
    assert errors, events[-2:]
    error = errors[0]
    # Serve kills the replica at the deadline: the client is told to retry, with the request id
    # under which the log tells operators what happened, and sees nothing of Ray's internals.
    assert error["code"] == "engine_unavailable", error
    assert "retry" in error["message"] and "request id" in error["message"]
    assert not any(word in error["message"] for word in ("actor", "pid", "namespace", "ray."))
