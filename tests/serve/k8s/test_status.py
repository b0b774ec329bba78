"""Reading RayService status documents. No API server runs here: the documents below are shaped
after KubeRay's RayService CRD (v1.7.0) and its samples, and each one is checked against that
CRD's schema first, so that they are documents KubeRay can write."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.k8s.status import (
    K8sError,
    RayServiceStatus,
    format_status,
    unschedulable_pods,
    wait_until_ready,
)
from tests.crd_schema import load_crd_schema, validation_errors

REPO = Path(__file__).resolve().parents[3]
CRD = REPO.parent / "shared" / "data" / "kuberay-crds" / "v1.7.0" / "ray.io_rayservices.yaml"
T = "2026-11-02T10:00:00Z"

READY = yaml.safe_load(f"""
metadata: {{name: r1serve, namespace: llm, generation: 1}}
status:
  conditions:
    - {{type: Ready, status: "True", reason: NonZeroServeEndpoints,
       message: Number of serve endpoints is greater than 0, lastTransitionTime: "{T}",
       observedGeneration: 1}}
    - {{type: UpgradeInProgress, status: "False", reason: NoPendingCluster,
       message: Active Ray cluster exists and no pending Ray cluster, lastTransitionTime: "{T}",
       observedGeneration: 1}}
  numServeEndpoints: 2
  observedGeneration: 1
  serviceStatus: Running
  lastUpdateTime: "{T}"
  activeServiceStatus:
    rayClusterName: r1serve-raycluster-7x2kq
    applicationStatuses:
      r1serve:
        status: RUNNING
        serveDeploymentStatuses:
          EngineDeployment: {{status: HEALTHY}}
          OpenAIIngress: {{status: HEALTHY}}
    rayClusterStatus:
      state: ready
      availableWorkerReplicas: 1
      desiredWorkerReplicas: 1
      readyWorkerReplicas: 1
      minWorkerReplicas: 1
      maxWorkerReplicas: 2
      desiredGPU: "8"
      endpoints: {{client: "10001", dashboard: "8265", gcs-server: "6379", serve: "8000"}}
      head: {{podIP: 10.8.0.12, podName: r1serve-raycluster-7x2kq-head-abcde,
             serviceIP: 10.8.0.12, serviceName: r1serve-raycluster-7x2kq-head-svc}}
      conditions:
        - {{type: HeadPodReady, status: "True", reason: HeadPodRunningAndReady, message: "",
           lastTransitionTime: "{T}"}}
  pendingServiceStatus: {{}}
""")

INITIALIZING = yaml.safe_load(f"""
metadata: {{name: r1serve, namespace: llm, generation: 1}}
status:
  conditions:
    - {{type: Ready, status: "False", reason: Initializing, message: "",
       lastTransitionTime: "{T}", observedGeneration: 1}}
  numServeEndpoints: 0
  observedGeneration: 1
  serviceStatus: NotRunning
  activeServiceStatus: {{}}
  pendingServiceStatus:
    rayClusterName: r1serve-raycluster-m9t4z
    rayClusterStatus:
      desiredWorkerReplicas: 2
      readyWorkerReplicas: 0
      desiredGPU: "16"
""")

DEPLOYING = yaml.safe_load(f"""
metadata: {{name: r1serve, namespace: llm, generation: 1}}
status:
  conditions:
    - {{type: Ready, status: "False", reason: ZeroServeEndpoints, message: "",
       lastTransitionTime: "{T}", observedGeneration: 1}}
  observedGeneration: 1
  activeServiceStatus:
    rayClusterName: r1serve-raycluster-7x2kq
    applicationStatuses:
      r1serve:
        status: DEPLOYING
        serveDeploymentStatuses:
          EngineDeployment:
            status: UPDATING
            message: Deployment 'EngineDeployment' in application 'r1serve' has 1 replicas
              that have taken more than 30s to initialize.
          OpenAIIngress: {{status: HEALTHY}}
    rayClusterStatus: {{state: ready, desiredWorkerReplicas: 2, readyWorkerReplicas: 2}}
""")

UPGRADING = copy.deepcopy(READY)
UPGRADING["metadata"]["generation"] = 2
UPGRADING["status"]["conditions"][1].update(status="True", reason="BothActivePendingClustersExist")
UPGRADING["status"]["pendingServiceStatus"] = {
    "rayClusterName": "r1serve-raycluster-q8w2e",
    "rayClusterStatus": {"desiredWorkerReplicas": 1, "readyWorkerReplicas": 0}}

GPU_PENDING_POD = {
    "metadata": {"name": "r1serve-raycluster-m9t4z-gpu-workers-worker-0"},
    "status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/6 nodes are available: 6 Insufficient nvidia.com/gpu. preemption: 0/6 "
                   "nodes are available: 6 No preemption victims found."}]}}
RUNNING_POD = {"metadata": {"name": "head"}, "status": {"phase": "Running", "conditions": []}}


@pytest.fixture(scope="module")
def rayservice_schema() -> dict[str, Any]:
    return load_crd_schema(CRD)


@pytest.mark.parametrize("doc", [READY, INITIALIZING, DEPLOYING, UPGRADING],
                         ids=["ready", "initializing", "deploying", "upgrading"])
def test_documents_are_valid_rayservice_statuses(rayservice_schema, doc) -> None:
    spec = yaml.safe_load((REPO / "k8s" / "h200x8" / "rayservice-r1serve.yaml").read_text())
    obj = {"apiVersion": "ray.io/v1", "kind": "RayService", **doc, "spec": spec["spec"]}
    assert validation_errors(obj, rayservice_schema) == []


def test_ready_service() -> None:
    s = RayServiceStatus.from_object(READY)
    assert s.serving and s.reason == "NonZeroServeEndpoints" and not s.upgrading
    assert s.serve_endpoints == 2
    assert s.endpoint == "http://r1serve-serve-svc.llm.svc:8000/v1"
    assert s.active is not None and s.active.applications[0].status == "RUNNING"
    assert s.summary().startswith("Ready: 2 serve endpoint(s)")
    text = format_status(s)
    assert "application r1serve: RUNNING" in text and "EngineDeployment: HEALTHY" in text


def test_api_service_name_comes_from_the_spec() -> None:
    doc = copy.deepcopy(READY)
    doc["spec"] = {"serveService": {"metadata": {"name": "r1serve-api"},
                                    "spec": {"ports": [{"name": "serve", "port": 9000}]}}}
    assert RayServiceStatus.from_object(doc).endpoint == "http://r1serve-api.llm.svc:9000/v1"


def test_initializing_cluster_waiting_for_gpus() -> None:
    pods = unschedulable_pods([GPU_PENDING_POD, RUNNING_POD])
    s = RayServiceStatus.from_object(INITIALIZING, pods)
    assert not s.serving and s.active is None
    assert s.cluster_names() == ["r1serve-raycluster-m9t4z"]
    summary = s.summary()
    assert "not ready (Initializing)" in summary and "workers 0/2 ready" in summary
    assert "1 pod(s) pending, insufficient GPUs" in summary
    assert "add GPU nodes" in format_status(s)


def test_deploying_application_shows_the_deployment_message() -> None:
    s = RayServiceStatus.from_object(DEPLOYING)
    assert not s.serving and "app r1serve DEPLOYING" in s.summary()
    assert "taken more than 30s to initialize" in format_status(s)


def test_upgrade_not_yet_reconciled_is_not_serving_the_new_spec() -> None:
    s = RayServiceStatus.from_object(UPGRADING)
    assert s.ready and s.upgrading and not s.reconciled and not s.serving
    assert "upgrade in progress" in format_status(s)
    assert s.cluster_names() == ["r1serve-raycluster-7x2kq", "r1serve-raycluster-q8w2e"]


def test_kuberay_before_conditions_uses_service_status() -> None:
    doc = {"metadata": {"name": "old"}, "status": {"serviceStatus": "Running"}}
    assert RayServiceStatus.from_object(doc).ready


def test_no_status_yet() -> None:
    s = RayServiceStatus.from_object({"metadata": {"name": "r1serve", "generation": 1}})
    assert not s.serving and "no status yet" in s.summary()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_reports_progress_until_ready() -> None:
    docs = iter([INITIALIZING] * 3 + [DEPLOYING] * 2 + [READY])
    clock, lines = _Clock(), []
    s = wait_until_ready(lambda: RayServiceStatus.from_object(next(docs)), timeout_s=600,
                         interval_s=10, report=lines.append, heartbeat_s=15,
                         sleep=clock.sleep, clock=lambda: clock.now)
    assert s.serving
    assert lines[0].startswith("[0:00:00] not ready (Initializing)")
    assert any(line.startswith("[0:00:20] not ready (Initializing)") for line in lines)
    assert lines[-1].startswith("[0:00:50] Ready")


def test_wait_times_out_with_the_last_reason() -> None:
    clock = _Clock()
    with pytest.raises(K8sError, match=r"not ready after 0:01:00: not ready \(Initializing\)"):
        wait_until_ready(lambda: RayServiceStatus.from_object(INITIALIZING), timeout_s=60,
                         interval_s=10, report=lambda _: None, sleep=clock.sleep,
                         clock=lambda: clock.now)
