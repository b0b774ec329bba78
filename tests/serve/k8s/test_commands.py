"""`r1serve k8s` argument handling and what each subcommand asks of the cluster."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.k8s import commands
from serve.k8s.helm import RenderRequest
from serve.k8s.status import RayServiceStatus

from .test_status import DEPLOYING, READY

OBJECTS = [
    {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "r1serve-weights"}},
    {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "r1serve"}},
]


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="r1serve")
    commands.add_k8s_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["k8s", *argv])


class FakeCluster:
    namespace = "llm"

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.docs = list(docs or [READY])

    def apply(self, objects, report=print) -> None:
        self.applied = list(objects)

    def delete(self, objects, keep, report=print) -> None:
        self.deleted = [o["kind"] for o in reversed(objects) if not keep(o)]

    def rayservice_status(self, name: str) -> RayServiceStatus:
        doc = self.docs.pop(0) if len(self.docs) > 1 else self.docs[0]
        return RayServiceStatus.from_object(doc)


@pytest.fixture
def fake(monkeypatch) -> tuple[FakeCluster, list[RenderRequest]]:
    cluster, requests = FakeCluster(), []
    monkeypatch.setattr(commands, "_connect", lambda ns: cluster)

    def render(request: RenderRequest, helm: str | None) -> list[dict[str, Any]]:
        requests.append(request)
        return OBJECTS

    monkeypatch.setattr(commands, "render", render)
    return cluster, requests


def test_apply_renders_the_profile_and_applies_it(fake, capsys) -> None:
    cluster, requests = fake
    ns = _parse("apply", "--profile", "h100x16", "-n", "llm", "--set", "rdma.enabled=true")
    assert ns.func(ns) == 0
    (request,) = requests
    assert request.args()[:5] == ["template", "r1serve", str(request.chart), "--set",
                                  "profile=h100x16"]
    assert "rdma.enabled=true" in request.args()
    assert cluster.applied == OBJECTS
    assert "r1serve k8s status --name r1serve -n llm --wait" in capsys.readouterr().out


def test_apply_wait_follows_until_ready(fake, capsys) -> None:
    cluster, _ = fake
    cluster.docs = [DEPLOYING, READY]
    ns = _parse("apply", "--profile", "h200x8", "--wait", "--interval", "0")
    assert ns.func(ns) == 0
    out = capsys.readouterr()
    assert "not ready (ZeroServeEndpoints)" in out.err and "Ready" in out.err
    assert "RayService llm/r1serve: Ready" in out.out


def test_status_exit_code_says_whether_it_serves(fake, capsys) -> None:
    cluster, _ = fake
    ns = _parse("status", "--name", "r1serve")
    assert ns.func(ns) == 0
    cluster.docs = [DEPLOYING]
    assert ns.func(ns) == 1
    assert "application r1serve: DEPLOYING" in capsys.readouterr().out


def test_delete_keeps_the_weights_unless_asked(fake) -> None:
    cluster, _ = fake
    ns = _parse("delete", "--profile", "h200x8")
    ns.func(ns)
    assert cluster.deleted == ["RayService"]
    ns = _parse("delete", "--profile", "h200x8", "--delete-weights")
    ns.func(ns)
    assert cluster.deleted == ["RayService", "PersistentVolumeClaim"]


def test_profile_is_required_for_apply() -> None:
    with pytest.raises(SystemExit):
        _parse("apply")


def _helm() -> str | None:
    beside = Path(sys.executable).parent / "helm"
    return shutil.which("helm") or (str(beside) if beside.is_file() else None)


NEEDS_HELM = pytest.mark.skipif(
    _helm() is None, reason="no helm binary: bash scripts/install_helm.sh .venv/bin")


@NEEDS_HELM
def test_apply_dry_run_prints_the_rendered_objects(capsys) -> None:
    ns = _parse("apply", "--profile", "h800x32-wide-ep", "--dry-run", "--helm", _helm())
    assert ns.func(ns) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    rayservice = next(o for o in objects if o["kind"] == "RayService")
    assert rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["numOfHosts"] == 4


@NEEDS_HELM
def test_render_errors_carry_helms_message() -> None:
    from serve.k8s.helm import HelmError, render

    with pytest.raises(HelmError, match="profiles.custom.nodesPerReplica is required"):
        render(RenderRequest(profile="custom"), _helm())
