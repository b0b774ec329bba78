"""The requests `r1serve k8s` makes. No API server runs here: the official client's
DynamicClient runs for real over a fake HTTP layer (ApiClient.rest_client) that records each
request and answers like an API server would; API discovery is a fixed table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import RESTResponse
from kubernetes.config import kube_config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from serve.k8s.cluster import Cluster, connect
from serve.k8s.status import K8sError

# (apiVersion, kind) → (plural, namespaced): what discovery finds on a cluster with KubeRay.
SERVED = {
    ("ray.io/v1", "RayService"): ("rayservices", True),
    ("ray.io/v1", "RayJob"): ("rayjobs", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
}

RAYSERVICE = {"apiVersion": "ray.io/v1", "kind": "RayService",
              "metadata": {"name": "r1serve"}, "spec": {"serveConfigV2": "applications: []"}}
PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "r1serve-weights"},
       "spec": {}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r1serve-dashboard"}}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class _Resp:
    def __init__(self, status: int, payload: Any) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 403: "Forbidden", 404: "Not Found"}.get(
            status, "Error")
        self.data = json.dumps(payload).encode()
        self.headers = {"content-type": "application/json"}


class FakeServer:
    """Answers (method, path) from a table; everything else is a 404 Status."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}

    def request(self, method, url, headers=None, body=None, post_params=None,
                _request_timeout=None):
        parts = urlsplit(url)
        self.calls.append(Call(method, parts.path, parse_qs(parts.query), dict(headers or {}),
                               body))
        status, payload = self.routes.get((method, parts.path), (404, {
            "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": f"{parts.path} not found"}))
        if status < 300 and method == "PATCH" and payload is None:
            payload = body
        return RESTResponse(_Resp(status, payload))


class FixedDiscoverer:
    def __init__(self, client: DynamicClient, cache_file: Any = None) -> None:
        self.client = client

    def get(self, api_version: str | None = None, kind: str | None = None, **_: Any) -> Resource:
        try:
            plural, namespaced = SERVED[(api_version, kind)]
        except KeyError:
            raise ResourceNotFoundError(f"No matches found for {api_version} {kind}") from None
        group, _, version = api_version.rpartition("/")
        return Resource(prefix="apis" if group else "api", group=group, api_version=version,
                        kind=kind, namespaced=namespaced, name=plural, client=self.client)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def cluster(server: FakeServer) -> Cluster:
    api = ApiClient(Configuration(host="https://k8s.test"))
    api.rest_client.request = server.request
    return Cluster(DynamicClient(api, discoverer=FixedDiscoverer), namespace="llm")


def test_apply_is_a_server_side_apply_per_object(cluster: Cluster, server: FakeServer) -> None:
    base = "/apis/ray.io/v1/namespaces/llm/rayservices/r1serve"
    server.routes[("PATCH", base)] = (200, None)
    server.routes[("PATCH", "/api/v1/namespaces/llm/persistentvolumeclaims/r1serve-weights")] = (
        201, None)
    lines: list[str] = []
    cluster.apply([PVC, RAYSERVICE], report=lines.append)
    pvc_call, rs_call = server.calls
    assert (rs_call.method, rs_call.path) == ("PATCH", base)
    assert rs_call.query == {"fieldManager": ["r1serve"], "force": ["true"]}
    assert rs_call.headers["Content-Type"] == "application/apply-patch+yaml"
    assert rs_call.body["metadata"] == {"name": "r1serve", "namespace": "llm"}
    assert rs_call.body["spec"] == RAYSERVICE["spec"]
    assert "namespace" not in RAYSERVICE["metadata"]  # the caller's object is not changed
    assert pvc_call.path.endswith("/persistentvolumeclaims/r1serve-weights")
    assert lines == ["applied PersistentVolumeClaim/r1serve-weights", "applied RayService/r1serve"]


def test_apply_without_kuberay_changes_nothing(cluster: Cluster, server: FakeServer) -> None:
    rayservice = {**RAYSERVICE, "apiVersion": "ray.io/v2"}  # a cluster without these CRDs
    with pytest.raises(K8sError, match=r"RayService \(ray.io/v2\): missing KubeRay CRDs"):
        cluster.apply([PVC, rayservice])
    assert server.calls == []


def test_apply_names_the_object_the_server_refused(cluster: Cluster, server: FakeServer) -> None:
    server.routes[("PATCH", "/apis/ray.io/v1/namespaces/llm/rayservices/r1serve")] = (403, {
        "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": 'rayservices.ray.io "r1serve" is forbidden: User "dev" cannot patch'})
    with pytest.raises(K8sError) as e:
        cluster.apply([RAYSERVICE])
    assert e.value.message == (
        'apply RayService/r1serve in llm: 403 Forbidden: rayservices.ray.io "r1serve" is '
        'forbidden: User "dev" cannot patch')


def test_delete_keeps_weights_and_tolerates_absent(cluster: Cluster, server: FakeServer) -> None:
    server.routes[("DELETE", "/apis/ray.io/v1/namespaces/llm/rayservices/r1serve")] = (
        200, {"kind": "Status", "status": "Success"})
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "r1serve"}}
    lines: list[str] = []
    cluster.delete([PVC, CONFIGMAP, RAYSERVICE, monitor],
                   keep=lambda o: o["kind"] == "PersistentVolumeClaim", report=lines.append)
    assert [(c.method, c.path) for c in server.calls] == [
        ("DELETE", "/apis/ray.io/v1/namespaces/llm/rayservices/r1serve"),
        ("DELETE", "/api/v1/namespaces/llm/configmaps/r1serve-dashboard")]
    assert server.calls[0].body == {"propagationPolicy": "Background"}
    assert lines == ["skipped PodMonitor/r1serve: monitoring.coreos.com/v1 not served",
                     "deleted RayService/r1serve", "absent ConfigMap/r1serve-dashboard",
                     "kept PersistentVolumeClaim/r1serve-weights"]


def test_status_reads_the_rayservice_and_its_unschedulable_pods(cluster: Cluster,
                                                                 server: FakeServer) -> None:
    from .test_status import GPU_PENDING_POD, INITIALIZING

    server.routes[("GET", "/apis/ray.io/v1/namespaces/llm/rayservices/r1serve")] = (
        200, {"apiVersion": "ray.io/v1", "kind": "RayService", **INITIALIZING})
    server.routes[("GET", "/api/v1/namespaces/llm/pods")] = (
        200, {"kind": "PodList", "apiVersion": "v1", "items": [GPU_PENDING_POD]})
    status = cluster.rayservice_status("r1serve")
    selector = "ray.io/cluster in (r1serve-raycluster-m9t4z)"
    assert server.calls[1].query == {"labelSelector": [selector]}
    assert status.unschedulable[0].lacks_gpus
    assert "insufficient GPUs" in status.summary()


def test_status_of_a_missing_rayservice(cluster: Cluster) -> None:
    with pytest.raises(K8sError, match="RayService/r1serve not found in namespace llm"):
        cluster.rayservice_status("r1serve")


def test_no_kubeconfig_means_no_cluster_access(tmp_path, monkeypatch) -> None:
    # The client reads KUBECONFIG once, at import: point its default at the file instead.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(K8sError, match="no cluster access"):
        connect()


def test_kubeconfig_context_namespace_is_the_default(tmp_path, monkeypatch) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gpu",
        "clusters": [{"name": "c", "cluster": {"server": "https://k8s.test"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gpu", "context": {"cluster": "c", "user": "u",
                                                 "namespace": "llm"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    assert connect()[1] == "llm"
    assert connect("other")[1] == "default"
