"""The chart renders, for every profile and a matrix of toggles, objects that Kubernetes' own
schemas, KubeRay's CRDs, Ray Serve's config schema and r1serve's config schema all accept."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve.config import R1ServeConfig
from serve.k8s.helm import CHART_DIR
from tests.crd_schema import validation_errors

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"  # a Kubernetes version kubernetes-validate ships schemas for
PROFILES = ("h200x8", "h100x16", "h800x32-wide-ep")
CONFIG_FILES = {"h200x8": "8xh200.yaml", "h100x16": "2x8xh100.yaml",
                "h800x32-wide-ep": "4x8xh800-wide-ep.yaml"}
TOPOLOGY = {"h200x8": (1, 8), "h100x16": (2, 8), "h800x32-wide-ep": (4, 8)}
# Kinds of CRDs kubernetes-validate does not ship: checked for shape only.
THIRD_PARTY = {"PodMonitor", "ServiceMonitor", "HTTPRoute"}

TOGGLES: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "rdma-hostnetwork": ("rdma.enabled=true", "worker.hostNetwork=true", "nccl.ibHca=mlx5"),
    "hostpath-initcontainer": ("weights.storage=hostPath", "weights.hostPath=/mnt/models",
                               "weights.download.mode=initContainer",
                               "weights.download.hfTokenSecret=hf"),
    "existing-claim-no-download": ("weights.pvc.existingClaim=models",
                                   "weights.download.mode=none"),
    "no-api-keys": ("apiKeys.enabled=false",),
    "ingress": ("ingress.enabled=true", "ingress.host=r1.example.com",
                "ingress.className=nginx", "ingress.tlsSecretName=r1-tls"),
    "gateway": ("gateway.enabled=true", "gateway.parentRefs[0].name=public",
                "gateway.hostnames[0]=r1.example.com"),
    "monitors": ("metrics.podMonitor.enabled=true", "metrics.serviceMonitor.enabled=true",
                 "metrics.podMonitor.labels.release=prom"),
    "everything-off": ("networkPolicy.enabled=false", "podDisruptionBudget.enabled=false",
                       "grafana.dashboard.enabled=false", "autoscaler.enabled=false"),
    "loadtest": ("loadtest.enabled=true", "loadtest.resultsClaim=results"),
    "fixed-replicas": ("config.autoscaling.min_replicas=2", "config.autoscaling.max_replicas=2"),
    "scale-from-zero": ("config.autoscaling.min_replicas=0",
                        "config.autoscaling.targets.cold_start_s=600"),
    "upgrade-none": ("rayService.upgradeStrategy=None",),
}


def _validate(obj: dict[str, Any], crd_schemas: dict[str, dict[str, Any]]) -> None:
    kind = obj["kind"]
    ref = f"{kind}/{obj['metadata']['name']}"
    if kind in crd_schemas:
        assert obj["apiVersion"] == "ray.io/v1", ref
        errors = validation_errors(obj, crd_schemas[kind])
        assert not errors, f"{ref} violates the KubeRay v1.7.0 CRD:\n" + "\n".join(errors)
    elif kind in THIRD_PARTY:
        assert obj["metadata"]["name"] and isinstance(obj["spec"], dict), ref
    else:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{ref} is not a valid Kubernetes {K8S_VERSION} object: {e.message} "
                        f"at {'.'.join(str(p) for p in e.path)}")


def _serve_app(rayservice: dict[str, Any]) -> dict[str, Any]:
    serve_config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)  # what Ray's dashboard will accept
    (app,) = serve_config["applications"]
    return app


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_is_clean(helm: str, profile: str) -> None:
    done = subprocess.run([helm, "lint", "--strict", str(CHART_DIR), "--set",
                           f"profile={profile}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_is_valid(template, crd_schemas, profile: str, toggle: str) -> None:
    rendered = template(profile, *TOGGLES[toggle])
    assert rendered.rc == 0, rendered.stderr
    assert rendered.objects
    for obj in rendered.objects:
        _validate(obj, crd_schemas)
    app = _serve_app(rendered.one("RayService"))
    assert app["import_path"] == "serve.app:app_builder"
    R1ServeConfig.from_dict(app["args"])


@pytest.mark.parametrize("profile", PROFILES)
def test_application_args_equal_the_profile_config_file(template, profile: str) -> None:
    """`helm install --set profile=P` serves what `r1serve deploy configs/P.yaml` serves."""
    app = _serve_app(template(profile).one("RayService"))
    from_chart = R1ServeConfig.from_dict(app["args"])
    from_file = R1ServeConfig.from_yaml(REPO / "configs" / CONFIG_FILES[profile])
    assert from_chart == from_file
    assert from_chart.model.path == "/models/DeepSeek-R1"
    assert from_chart.engine.backend_args["profile"] == profile


@pytest.mark.parametrize("profile", PROFILES)
def test_worker_group_matches_topology_and_replicas(template, profile: str) -> None:
    nodes, gpus = TOPOLOGY[profile]
    rs = template(profile).one("RayService")
    cfg = R1ServeConfig.from_dict(_serve_app(rs)["args"])
    assert (cfg.engine.nodes_per_replica, cfg.engine.devices_per_node) == (nodes, gpus)
    cluster = rs["spec"]["rayClusterConfig"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["numOfHosts"] == nodes
    assert group["minReplicas"] == cfg.autoscaling.min_replicas
    assert group["maxReplicas"] == cfg.autoscaling.max_replicas
    assert "replicas" not in group  # min < max: the autoscaler owns it
    assert group["rayStartParams"]["num-gpus"] == str(gpus)
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["upscalingMode"] == "Default"
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == str(gpus)
    assert worker["resources"]["limits"] == worker["resources"]["requests"]


def test_fixed_replicas_are_set_on_the_group(template) -> None:
    rs = template("h100x16", *TOGGLES["fixed-replicas"]).one("RayService")
    (group,) = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 2, 2)


def test_head_has_no_gpus_and_the_ports(template) -> None:
    head = template("h200x8").one("RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]
    container = head["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000,
                     "metrics": 8080}
    assert not any("gpu" in k for k in container["resources"]["limits"])
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_multinode_worker_pod_setup(template) -> None:
    rs = template("h800x32-wide-ep", *TOGGLES["rdma-hostnetwork"]).one("RayService")
    spec = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    container = spec["containers"][0]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
    assert env["NCCL_IB_GID_INDEX"] == "3" and env["NCCL_IB_HCA"] == "mlx5"
    assert container["resources"]["limits"]["rdma/ib"] == "8"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H800"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_without_rdma_no_device_and_no_capability(template) -> None:
    rs = template("h200x8").one("RayService")
    container = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]
    assert set(container["resources"]["limits"]) == {"cpu", "memory", "nvidia.com/gpu"}
    assert "add" not in container["securityContext"]["capabilities"]
    assert "NCCL_IB_GID_INDEX" not in {e["name"] for e in container["env"]}


def test_api_keys_come_from_the_secret_the_config_names(template) -> None:
    rs = template("h200x8").one("RayService")
    cfg = R1ServeConfig.from_dict(_serve_app(rs)["args"])
    assert cfg.api.api_keys_env == "R1SERVE_API_KEYS"
    cluster = rs["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["R1SERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "r1serve-api-keys", "key": "api-keys"}
    off = template("h200x8", "apiKeys.enabled=false").one("RayService")
    assert R1ServeConfig.from_dict(_serve_app(off)["args"]).api.api_keys_env is None


def test_config_overrides_reach_the_application_even_when_false(template) -> None:
    rs = template("h800x32-wide-ep", "config.engine.dp_attention=false",
                  "config.model.context_length=16384").one("RayService")
    cfg = R1ServeConfig.from_dict(_serve_app(rs)["args"])
    assert cfg.engine.dp_attention is False and cfg.model.context_length == 16384
    assert cfg.engine.ep_size == 32  # the rest of the profile stays


def test_custom_profile(template) -> None:
    rs = template("custom", "profiles.custom.nodesPerReplica=3",
                  "config.engine.backend_args.profile=b200x24").one("RayService")
    group = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["numOfHosts"] == 3
    cfg = R1ServeConfig.from_dict(_serve_app(rs)["args"])
    assert (cfg.engine.nodes_per_replica, cfg.engine.devices_per_node) == (3, 8)


def test_probes_and_thresholds_allow_a_long_weight_load(template) -> None:
    rs = template("h200x8").one("RayService")
    assert rs["spec"]["serviceUnhealthySecondThreshold"] >= 3600
    assert rs["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    worker = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800


def test_images_are_pinned(template) -> None:
    text = template("h200x8", "loadtest.enabled=true").stdout
    images = {line.split("image:")[1].strip() for line in text.splitlines()
              if line.strip().startswith("image:")}
    assert images == {"ghcr.io/r1serve/r1serve:0.1.0"}


def test_rendered_output_has_no_blank_whitespace_lines(template) -> None:
    for toggle in TOGGLES.values():
        lines = template("h200x8", *toggle).stdout.splitlines()
        assert not [n for n, line in enumerate(lines) if line and not line.strip()]


def test_chart_files_exist() -> None:
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt"):
        assert (Path(CHART_DIR) / name).is_file(), name


@pytest.mark.parametrize("profile", PROFILES)
def test_worker_topology_is_the_sglang_profiles(template, profile: str) -> None:
    """The pods the chart asks for are the GPUs the SGLang flag profile lays the model over."""
    from serve.engine.sglang.profiles import get_profile

    layout = get_profile(profile).layout
    group = template(profile).one("RayService")["spec"]["rayClusterConfig"][
        "workerGroupSpecs"][0]
    assert group["numOfHosts"] == layout.nnodes
    assert group["rayStartParams"]["num-gpus"] == str(layout.gpus_per_node)
