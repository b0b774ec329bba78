"""One Serve replica whose EP=2 engine group spans two simulated nodes serves requests, and
`r1serve deploy` works as a Ray job entrypoint against a running Ray cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import ray
from ray import serve

from cluster.local_cluster import free_port, local_ray
from serve.config import R1ServeConfig
from serve.runner import start_app, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.multinode]
REPO = Path(__file__).resolve().parents[2]



def test_one_replica_spans_two_nodes_and_serves(tiny_fp32_dir):
    config = R1ServeConfig.from_dict({
        "model": {"path": str(tiny_fp32_dir), "context_length": 512},
        "engine": {"nodes_per_replica": 2, "devices_per_node": 1, "ep_size": 2,
                   "kv_pages": 128},
        "api": {"port": free_port(), "max_tokens_cap": 64},
        "app_name": "r1serve-2node",
    })
    with local_ray(2, cpus_per_node=1):
        try:
            start_app(config)
            wait_healthy(config, timeout_s=240, progress=lambda _: None)
            # the replica's placement group: one bundle on each node, the ranks inside it
            groups = [g for g in ray.util.placement_group_table().values()
                      if g["state"] == "CREATED" and g["strategy"] == "STRICT_SPREAD"]
            assert len(groups) == 1
            assert len(set(groups[0]["bundles_to_node_id"].values())) == 2
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{config.api.port}/v1",
                              api_key="none", max_retries=0, timeout=60)
            out = c.chat.completions.create(
                model="deepseek-r1", max_tokens=8,
                messages=[{"role": "user", "content": "Hello across nodes"}])
            assert out.usage.completion_tokens == 8
        finally:
            serve.shutdown()


def test_ray_job_submit_r1serve_deploy(tmp_path, tiny_fp32_dir):
    ray_bin = Path(sys.executable).parent / "ray"
    port = free_port()
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"model: {{path: {tiny_fp32_dir}, context_length: 512}}\n"
                   f"engine: {{devices_per_node: 1, kv_pages: 64}}\n"
                   f"api: {{port: {port}, max_tokens_cap: 32}}\napp_name: r1serve-job\n")
    dash = free_port()
    # A throwaway cluster on loopback: no token, so the test needs no credentials on disk.
    # The job's shell finds `r1serve` where this interpreter's scripts are, as in an image.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # --block keeps `ray start` in the foreground, so ending it stops this cluster alone
    # (`ray stop` would stop every Ray on the machine).
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--num-cpus=2", "--port",
         str(free_port()),
         "--node-ip-address=127.0.0.1", f"--dashboard-port={dash}",
         f"--dashboard-agent-listen-port={free_port()}", "--include-dashboard=true",
         "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    env["RAY_ADDRESS"] = f"http://127.0.0.1:{dash}"
    try:
        for _ in range(60):  # the head and its job agent take a while to come up
            job = subprocess.run(
                [str(ray_bin), "job", "submit", "--working-dir", str(REPO), "--",
                 "r1serve", "deploy", str(cfg)],
                env=env, capture_output=True, text=True, timeout=400)
            if "submitted successfully" in job.stdout + job.stderr:
                break  # it ran: pass or fail, that is the answer
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "r1serve is ready" in job.stdout
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                          max_retries=0, timeout=60)
        out = c.chat.completions.create(model="deepseek-r1", max_tokens=4,
                                        messages=[{"role": "user", "content": "hi"}])
        assert out.usage.completion_tokens == 4
    finally:
        head.terminate()
        head.wait(timeout=120)


if shutil.which("r1serve") is None and not (Path(sys.executable).parent / "r1serve").exists():
    pytest.skip("the r1serve console script is not installed", allow_module_level=True)
