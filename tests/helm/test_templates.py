"""One test per template: switched on it renders its kind, switched off it renders nothing;
plus what each template must say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.k8s.helm import CHART_DIR

# template → (kind, values that render it, values that switch it off)
TEMPLATES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "rayservice-r1serve.yaml": ("RayService", (), ()),
    "persistentvolumeclaim-weights.yaml": (
        "PersistentVolumeClaim", (), ("weights.pvc.existingClaim=mine",)),
    "job-weights.yaml": ("Job", (), ("weights.download.mode=none",)),
    "ingress-api.yaml": ("Ingress", ("ingress.enabled=true", "ingress.host=r1.example.com"), ()),
    "httproute-api.yaml": ("HTTPRoute", ("gateway.enabled=true",
                                         "gateway.parentRefs[0].name=gw"), ()),
    "podmonitor-r1serve.yaml": ("PodMonitor", ("metrics.podMonitor.enabled=true",), ()),
    "servicemonitor-r1serve.yaml": (
        "ServiceMonitor", ("metrics.serviceMonitor.enabled=true",), ()),
    "service-metrics.yaml": ("Service", ("metrics.serviceMonitor.enabled=true",), ()),
    "configmap-dashboard.yaml": ("ConfigMap", (), ("grafana.dashboard.enabled=false",)),
    "networkpolicy-r1serve.yaml": ("NetworkPolicy", (), ("networkPolicy.enabled=false",)),
    "networkpolicy-weights.yaml": ("NetworkPolicy", (), ("weights.download.mode=none",)),
    "poddisruptionbudget-head.yaml": (
        "PodDisruptionBudget", (), ("podDisruptionBudget.enabled=false",)),
    "poddisruptionbudget-worker.yaml": (
        "PodDisruptionBudget", (), ("podDisruptionBudget.enabled=false",)),
    "rayjob-loadtest.yaml": ("RayJob", ("loadtest.enabled=true",), ()),
}


def test_every_template_is_covered() -> None:
    on_disk = {p.name for p in (CHART_DIR / "templates").glob("*.yaml")}
    assert on_disk == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_enabled_renders_its_kind(template, name: str) -> None:
    kind, on, _ = TEMPLATES[name]
    objects = template("h200x8", *on).by_source.get(name, [])
    assert [o["kind"] for o in objects] == [kind]


@pytest.mark.parametrize("name", sorted(n for n, (_, on, off) in TEMPLATES.items() if on or off))
def test_disabled_renders_nothing(template, name: str) -> None:
    _, on, off = TEMPLATES[name]
    # Off: the template's own switch off, or simply not switched on.
    assert name not in template("h200x8", *off).by_source


def test_weights_job_is_idempotent_and_named_by_revision(template) -> None:
    job = template("h200x8").one("Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ]' in script
    env = {e["name"]: e.get("value") for e in
           job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_REPO"] == "deepseek-ai/DeepSeek-R1" and env["HF_REVISION"] == "main"
    other = template("h200x8", "weights.revision=abc123").one("Job")
    assert other["metadata"]["name"] != job["metadata"]["name"]


def test_hf_token_comes_from_a_secret(template) -> None:
    job = template("h200x8", "weights.download.hfTokenSecret=hf").one("Job")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert "HF_TOKEN" not in str(template("h200x8").one("Job"))


def test_workers_wait_for_the_job_or_download_themselves(template) -> None:
    def init(*sets: str) -> list[dict]:
        rs = template("h200x8", *sets).one("RayService")
        return rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"].get(
            "initContainers", [])

    (wait,) = init()
    assert "until [" in wait["args"][0]
    (download,) = init("weights.storage=hostPath", "weights.hostPath=/mnt/m",
                       "weights.download.mode=initContainer")
    assert "snapshot_download" in download["args"][0]
    assert init("weights.download.mode=none") == []


def test_weights_job_is_unprivileged_and_takes_no_connections(template) -> None:
    rendered = template("h200x8")
    pod = rendered.one("Job")["spec"]["template"]
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert spec["securityContext"]["runAsUser"] >= 10000
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # What it writes: the weights volume (HF_HOME lives there too) and an emptyDir /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/models": "weights", "/tmp": "tmp"}
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in spec["volumes"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HOME"].startswith("/models/") and env["HOME"] == "/tmp"
    (policy,) = rendered.by_source["networkpolicy-weights.yaml"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"] == []


def test_service_account_token_only_where_the_api_is_needed(template) -> None:
    def pods(*sets: str) -> dict[str, dict]:
        cluster = template("h200x8", *sets).one("RayService")["spec"]["rayClusterConfig"]
        return {"head": cluster["headGroupSpec"]["template"]["spec"],
                "worker": cluster["workerGroupSpecs"][0]["template"]["spec"]}

    # The autoscaler sidecar scales the RayCluster through the API: the head keeps its token.
    assert "automountServiceAccountToken" not in pods()["head"]
    assert pods()["worker"]["automountServiceAccountToken"] is False
    without = pods("autoscaler.enabled=false")
    assert without["head"]["automountServiceAccountToken"] is False
    job = template("h200x8", "loadtest.enabled=true").one("RayJob")
    assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
        "automountServiceAccountToken"] is False


def test_every_serve_proxy_bounds_request_heads(template) -> None:
    """Serve runs a proxy on each Ray node; each must load the header deadline, with the
    chart's value, from a callback that exists."""
    from serve import header_timeout

    cluster = template("h200x8", "proxy.headerTimeoutS=7").one("RayService")["spec"][
        "rayClusterConfig"]
    containers = [cluster["headGroupSpec"]["template"]["spec"]["containers"][0],
                  cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]]
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in header_timeout.proxy_env(7)} == \
            {k: v.removesuffix(".0") for k, v in header_timeout.proxy_env(7).items()}


def test_a_distill_profile_downloads_its_own_model_unless_told_otherwise(template) -> None:
    def weights(*sets: str) -> tuple[str, str, str]:
        rendered = template("distill-qwen-32b", *sets)
        env = {e["name"]: e.get("value") for e in
               rendered.one("Job")["spec"]["template"]["spec"]["containers"][0]["env"]}
        size = rendered.one("PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"]
        return env["HF_REPO"], env["DEST"], size

    assert weights() == ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                         "/models/DeepSeek-R1-Distill-Qwen-32B", "160Gi")
    assert weights("weights.repoId=me/my-32b", "weights.subPath=mine") == (
        "me/my-32b", "/models/mine", "160Gi")
    assert weights()[0] != template("h200x8").one("Job")["spec"]["template"]["spec"][
        "containers"][0]["env"][0].get("value", "")


def test_weights_claim_is_kept_on_uninstall(template) -> None:
    pvc = template("h200x8").one("PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_api_service_and_routes_target_the_openai_port(template) -> None:
    rendered = template("h200x8", "ingress.enabled=true", "ingress.host=r1.example.com",
                        "gateway.enabled=true", "gateway.parentRefs[0].name=gw")
    serve_svc = rendered.one("RayService")["spec"]["serveService"]
    assert serve_svc["metadata"]["name"] == "r1serve-api"
    assert serve_svc["spec"]["ports"] == [
        {"name": "serve", "port": 8000, "targetPort": 8000, "protocol": "TCP"}]
    path = rendered.one("Ingress")["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/v1"
    assert path["backend"]["service"] == {"name": "r1serve-api", "port": {"name": "serve"}}
    rule = rendered.one("HTTPRoute")["spec"]["rules"][0]
    assert rule["backendRefs"] == [{"name": "r1serve-api", "port": 8000}]


def test_network_policy_opens_only_the_api_port_to_everyone(template) -> None:
    (policy,) = template("h200x8").by_source["networkpolicy-r1serve.yaml"]
    policy = policy["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    open_rules = [r for r in policy["ingress"] if "from" not in r]
    assert open_rules == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    # GCS (6379) and the Ray client (10001) are reachable from the release's Ray pods only.
    exposed = {p["port"] for r in policy["ingress"] for p in r.get("ports", [])}
    assert not exposed & {6379, 10001}
    internal = policy["ingress"][0]
    assert "ports" not in internal
    assert internal["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "r1serve", "app.kubernetes.io/instance": "r1serve",
        "r1serve.io/ray": "serving"}}}]


def test_monitors_scrape_r1serve_metrics_from_the_head_only(template) -> None:
    rendered = template("h200x8", "metrics.podMonitor.enabled=true",
                        "metrics.serviceMonitor.enabled=true")
    for monitor, key in ((rendered.one("PodMonitor"), "podMetricsEndpoints"),
                         (rendered.one("ServiceMonitor"), "endpoints")):
        ray, api = monitor["spec"][key]
        assert ray["port"] == "metrics"
        assert api["port"] == "serve" and api["path"] == "/metrics"
        assert api["relabelings"][0]["regex"] == "head"


def test_dashboard_configmap_carries_the_dashboard(template) -> None:
    cm = template("h200x8").one("ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["r1serve.json"])
    assert dashboard == json.loads((Path(CHART_DIR) / "dashboards" / "r1serve.json").read_text())


def test_loadtest_rayjob_runs_r1_loadtest_against_the_service(template) -> None:
    job = template("h200x8", "loadtest.enabled=true").one("RayJob")
    assert job["spec"]["entrypoint"] == (
        "r1-loadtest --url http://r1serve-api:8000/v1 --model deepseek-r1 "
        "--workload synthetic --rate 2 --duration 300 --out /results")
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_pod_disruption_budgets_select_ray_pods(template) -> None:
    budgets = template("h200x8").kind("PodDisruptionBudget")
    components = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
                  for b in budgets}
    assert components == {"head", "worker"}
    assert all(b["spec"]["maxUnavailable"] == 0 for b in budgets)


def test_security_context_is_restrictive(template) -> None:
    rs = template("h200x8").one("RayService")
    for group in [rs["spec"]["rayClusterConfig"]["headGroupSpec"],
                  *rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]]:
        spec = group["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_notes_render(helm: str) -> None:
    import subprocess

    done = subprocess.run([helm, "install", "r1serve", str(CHART_DIR), "--dry-run=client",
                           "--set", "profile=h200x8", "--namespace", "llm"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "r1serve k8s status --name r1serve --namespace llm --wait" in done.stdout
