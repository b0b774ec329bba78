"""checkov's Kubernetes policies on the rendered chart: every finding is fixed or deliberate, and
each deliberate one is listed here with the reason.

checkov does not read KubeRay's kinds, so the pod templates of the RayService (head, GPU
workers) and of the load-test RayJob are scanned as the Pods KubeRay makes of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# Two renders cover every template and switch: the default install, and everything turned on
# (multi-node RDMA workers on the host network, no autoscaler, load test, monitors, routes).
RENDERS: dict[str, tuple[str, ...]] = {
    "default": ("h200x8",),
    "everything": ("h800x32-wide-ep", "rdma.enabled=true", "worker.hostNetwork=true",
                   "nccl.ibHca=mlx5", "autoscaler.enabled=false", "loadtest.enabled=true",
                   "metrics.podMonitor.enabled=true", "metrics.serviceMonitor.enabled=true",
                   "ingress.enabled=true", "ingress.host=r1.example.com",
                   "gateway.enabled=true", "gateway.parentRefs[0].name=gw"),
}

RAY_PODS = frozenset({"head", "head-autoscaled", "worker", "loadtest"})
ALL_PODS = RAY_PODS | {"weights"}

# check -> (the pods it is deliberate for, or "*" for every object; why).
DELIBERATE: dict[str, tuple[frozenset[str] | str, str]] = {
    "CKV_K8S_21": ("*", "the namespace is the install's (`helm install -n`, `kubectl apply -n`); "
                        "the chart names none"),
    "CKV_K8S_43": (ALL_PODS, "the image is the operator's own build of docker/Dockerfile, pinned "
                             "by tag; `image.tag: TAG@sha256:DIGEST` pins a digest"),
    "CKV_K8S_15": (ALL_PODS, "pull policy IfNotPresent: the CUDA image is tens of GB under a "
                             "pinned tag, and pulling it at every pod start lengthens cold starts"),
    "CKV_K8S_40": (RAY_PODS, "Ray pods run as the image's user (UID 1000, docker/Dockerfile), "
                             "which owns the home where Ray and SGLang keep their caches"),
    "CKV_K8S_22": (RAY_PODS, "Ray, SGLang, Triton and FlashInfer write JIT caches and Ray's "
                             "session files under the home directory and /tmp"),
    "CKV_K8S_35": (RAY_PODS, "API keys reach r1serve in the variable `api.api_keys_env` names, "
                             "and the load generator as OPENAI_API_KEY, as OpenAI clients read it"),
    "CKV_K8S_38": (frozenset({"head-autoscaled"}),
                   "KubeRay's autoscaler sidecar in the head scales the RayCluster through the "
                   "Kubernetes API"),
    "CKV_K8S_19": (frozenset({"worker"}),
                   "host network only with worker.hostNetwork=true, for RDMA fabrics whose "
                   "devices exist only in the host namespace (values.yaml)"),
    "CKV_K8S_25": (frozenset({"worker"}),
                   "IPC_LOCK only with rdma.enabled=true: GPUDirect RDMA and DeepEP pin memory "
                   "with the NIC (values.yaml)"),
    "CKV_K8S_8": (frozenset({"loadtest"}), "KubeRay gives Ray pods that set none its own "
                                           "liveness and readiness probes"),
    "CKV_K8S_9": (frozenset({"loadtest"}), "KubeRay gives Ray pods that set none its own "
                                           "liveness and readiness probes"),
    "CKV2_K8S_6": (frozenset({"loadtest"}),
                   "the opt-in load test's head is reached by KubeRay's job submitter pod, "
                   "whose labels the chart does not set"),
}


def _checkov() -> str | None:
    beside = Path(sys.executable).parent / "checkov"
    return str(beside) if beside.is_file() else shutil.which("checkov")


def _scanned(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The objects checkov sees, and the role of each by `Kind.name`: KubeRay's kinds become the
    Pods of their groups, the rest stay as they are (a Job's pods are checked as the Job's name)."""
    out, roles = [], {}
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("RayService", "RayJob"):
            spec = obj["spec"]["rayClusterConfig" if kind == "RayService" else "rayClusterSpec"]
            head = ("loadtest" if kind == "RayJob" else
                    "head-autoscaled" if spec.get("enableInTreeAutoscaling") else "head")
            groups = [(head, spec["headGroupSpec"])]
            groups += [("worker", g) for g in spec.get("workerGroupSpecs", [])]
            for role, group in groups:
                pod_name = f"{name}-{role}"
                out.append({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": pod_name,
                                         "labels": group["template"]["metadata"]["labels"]},
                            "spec": group["template"]["spec"]})
                roles[f"Pod.{pod_name}"] = role
            continue
        out.append(obj)
        roles[f"{kind}.{name}"] = "weights" if kind == "Job" else kind
        if kind == "Job":
            roles[f"Pod.{name}"] = "weights"
    return out, roles


@pytest.fixture(scope="module")
def findings(template, tmp_path_factory) -> list[tuple[str, str, str, str]]:
    """(check id, role, resource, check name) of every failed check over both renders."""
    checkov = _checkov()
    if checkov is None:
        pytest.skip("no checkov beside Python or on PATH: run "
                    "`bash scripts/install_checkov.sh .venv`")
    root = tmp_path_factory.mktemp("checkov")
    roles: dict[str, dict[str, str]] = {}
    for render, (profile, *sets) in RENDERS.items():
        objects, roles[render] = _scanned(template(profile, *sets).objects)
        (root / render).mkdir()
        (root / render / "manifests.yaml").write_text(yaml.safe_dump_all(objects))
    # Offline: no guideline download, no update check.
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    done = subprocess.run([checkov, "--directory", str(root), "--framework", "kubernetes",
                           "--skip-download", "--quiet", "--compact", "--output", "json",
                           "--soft-fail"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    failed = [c for r in (report if isinstance(report, list) else [report])
              for c in r.get("results", {}).get("failed_checks", [])]
    out = []
    for check in failed:
        render = Path(check["file_path"]).parts[-2]
        kind, _, name = check["resource"].split(".")[:3]  # Kind.namespace.name[.labels]
        out.append((check["check_id"], roles[render].get(f"{kind}.{name}", "?"), f"{render}: "
                    f"{check['resource']}", check["check_name"]))
    return out


def _deliberate(check_id: str, role: str) -> bool:
    where, _ = DELIBERATE.get(check_id, (frozenset(), ""))
    return where == "*" or role in where


def test_every_finding_is_deliberate(findings) -> None:
    unexpected = sorted({f"{c} {name} ({resource})" for c, role, resource, name in findings
                         if not _deliberate(c, role)})
    assert not unexpected, "checkov findings to fix (or to list in DELIBERATE, with why):\n" + \
        "\n".join(unexpected)


def test_every_deliberate_finding_still_occurs(findings) -> None:
    # A skip nothing needs any more would hide the next finding of its kind.
    seen = {c for c, role, _, _ in findings if _deliberate(c, role)}
    assert seen == set(DELIBERATE)
