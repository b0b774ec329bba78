"""Autoscaling live: the token-load policy on a local Ray with the tiny model, driven by
`r1-loadtest` as an operator would drive it. A ramp of load makes Serve add a replica; when the
load stops, one is removed after the downscale delay; every stream ends with a finish reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ray import serve

from cluster.local_cluster import free_port, local_ray
from loadtest.record import NOT_SENT
from serve.autoscaling.scaling_board import ScalingBoard
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

pytestmark = pytest.mark.slow

# Serve's replicas and handles push autoscaling metrics every 10 s by default; a test of a
# minute cannot wait for that. Both are read when Ray's processes start.
FAST_METRICS = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
                "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}
DOWNSCALE_DELAY_S = 8.0


@pytest.fixture
def app(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 512},
        # Two streams decode at once: a few concurrent clients queue on one replica.
        "engine": {"kv_pages": 256, "page_size": 16, "max_running": 2},
        "api": {"port": free_port(), "max_tokens_cap": 256},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 1.0,
                        "downscale_delay_s": DOWNSCALE_DELAY_S, "look_back_period_s": 11.0,
                        "targets": {"cold_start_s": 15.0, "trend_window_s": 30.0,
                                    "burst_window_s": 60.0}},
        "drain": {"deadline_s": 60.0},
        "app_name": "r1serve-autoscale",
    })
    with running(config, cpus=4):
        yield config


@contextmanager
def running(config: R1ServeConfig, cpus: int) -> Iterator[None]:
    """The app on a local Ray whose Serve pushes autoscaling metrics twice a second."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAST_METRICS.items():
            env.setenv(key, value)
        with local_ray(1, cpus_per_node=cpus):
            start_app(config)
            wait_healthy(config, timeout_s=240, progress=lambda _: None)
            try:
                yield
            finally:
                serve.shutdown()


def serving(config: R1ServeConfig) -> int:
    dep = serve.status().applications[config.app_name].deployments["EngineDeployment"]
    return sum(n for state, n in dep.replica_states.items() if str(state).endswith("RUNNING"))


def load(config: R1ServeConfig, out: Path) -> subprocess.Popen:
    """Six concurrent clients, ramped up over 5 s, for 40 s: 128-token answers."""
    return subprocess.Popen(
        [sys.executable, "-m", "loadtest", "--url", f"http://127.0.0.1:{config.api.port}",
         "--workload", "synthetic", "--num-requests", "2000", "--input-mean", "40",
         "--output-dist", "fixed", "--output-mean", "128", "--ignore-eos",
         "--concurrency", "6", "--ramp-up-s", "5", "--duration-s", "40",
         "--request-timeout-s", "120", "--out", str(out), "--no-progress", "--no-metrics"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_load_adds_a_replica_and_quiet_removes_one(app, tmp_path):
    assert serving(app) == 1
    run = load(app, tmp_path)
    peak, during = 1, []
    while run.poll() is None:
        peak = max(peak, serving(app))
        during.append(peak)
        time.sleep(1.0)
    output = run.stdout.read()
    assert run.returncode == 0, output
    assert peak >= 2, f"no replica added under load; replicas seen: {during}"

    stopped = time.monotonic()
    while serving(app) >= peak and time.monotonic() - stopped < 120:
        time.sleep(1.0)
    removed_after = time.monotonic() - stopped
    assert serving(app) < peak, "no replica removed within 120 s of the load stopping"
    assert removed_after >= DOWNSCALE_DELAY_S  # spare capacity had to last first

    result = json.loads((tmp_path / "result.json").read_text())
    # the schedule's requests due after --duration-s are recorded as never sent
    records = [r for r in result["requests"] if r["error_kind"] != NOT_SENT]
    assert len(records) > 20
    assert all(r["error_kind"] is None and r["finish_reason"] == "length"
               for r in records), [r for r in records if r["error_kind"]][:3]

    decision = ScalingBoard(app.app_name, "EngineDeployment").read()
    assert decision is not None and decision.demand  # the policy posted why


@pytest.fixture
def app_from_zero(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 512},
        "engine": {"kv_pages": 256, "page_size": 16},
        "api": {"port": free_port(), "max_tokens_cap": 64},
        "autoscaling": {"min_replicas": 0, "max_replicas": 1, "upscale_delay_s": 1.0,
                        "downscale_delay_s": 4.0, "look_back_period_s": 11.0},
        "app_name": "r1serve-from-zero",
    })
    with running(config, cpus=2):  # its health check wakes one replica
        yield config


def test_from_zero_replicas_a_request_is_held_until_one_starts(app_from_zero):
    """min_replicas 0 (development clusters): idle, the fleet goes to zero; a request then
    waits at the handle while Serve starts a replica, and is answered."""
    import openai

    deadline = time.monotonic() + 180
    while serving(app_from_zero) > 0 and time.monotonic() < deadline:
        time.sleep(1.0)
    assert serving(app_from_zero) == 0, "the idle fleet did not scale to zero"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{app_from_zero.api.port}/v1",
                           api_key="none", max_retries=0, timeout=240)
    started = time.monotonic()
    reply = client.chat.completions.create(
        model="deepseek-r1", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 4
    assert serving(app_from_zero) == 1 and time.monotonic() - started < 240
