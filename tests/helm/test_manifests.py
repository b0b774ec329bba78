"""k8s/ holds exactly what the chart renders today, and the dashboard plots metrics r1serve
exports."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client.metrics_core import Metric

from serve.api.metrics import ApiMetrics
from serve.autoscaling.decision import SIGNALS, ScalingDecision
from serve.autoscaling.scaling_metrics import scaling_registry
from serve.engine.sglang.stats import ray_exported_name
from serve.k8s import render_manifests
from serve.k8s.helm import CHART_DIR


def test_k8s_manifests_equal_a_fresh_render(helm: str) -> None:
    drifted = render_manifests.drift(helm)
    assert not drifted, ("k8s/ or values.schema.json is out of date; run "
                         f"`python -m serve.k8s.render_manifests`: {drifted}")


def test_every_profile_has_manifests(helm: str) -> None:
    for profile in ("h200x8", "h100x16", "h800x32-wide-ep"):
        assert (render_manifests.MANIFESTS_DIR / profile / "rayservice-r1serve.yaml").is_file()
    assert (render_manifests.MANIFESTS_DIR / "loadtest" / "rayjob-loadtest.yaml").is_file()
    assert (render_manifests.MANIFESTS_DIR / "README.md").is_file()


def _exported_names() -> set[str]:
    names: set[str] = set()
    family: Metric
    decision = ScalingDecision(at=0.0, replicas=1, running=1, target=1,
                               demand=dict.fromkeys(SIGNALS, 1.0))
    scaling = scaling_registry(lambda: decision).collect()
    for family in [*ApiMetrics().registry.collect(), *scaling]:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def test_dashboard_plots_only_exported_r1serve_metrics() -> None:
    dashboard = json.loads((CHART_DIR / "dashboards" / "r1serve.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\br1serve_[a-z0-9_]+", e)}
    assert used and used <= _exported_names(), used - _exported_names()
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Time to first token", "Inter-token latency", "Token throughput", "Queue",
                   "KV-cache usage", "Prefix-cache hit rate", "Engine replicas",
                   "Autoscaling: replicas"):
        assert needed in titles


def test_dashboard_plots_sglang_metrics_by_the_names_ray_exports() -> None:
    """Under Ray, SGLang's `sglang:x` reaches Prometheus as `ray_sglang_x`; a `sglang:` name
    on the dashboard would find no series."""
    metrics = CHART_DIR.parents[1] / ".." / "shared" / "data" / "sglang-0.5.23" / \
        "prometheus_metrics.txt"
    if not metrics.exists():
        pytest.skip("shared/data/sglang-0.5.23 is not beside this checkout")
    exported = {ray_exported_name(n) for n in metrics.read_text().split()}
    dashboard = json.loads((CHART_DIR / "dashboards" / "r1serve.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert not any("sglang:" in e for e in exprs)
    used = {m for e in exprs for m in re.findall(r"\bray_sglang_[a-z0-9_]+", e)}
    assert used and used <= exported, used - exported
