"""Rendering the chart with the real helm binary, and the schemas objects are checked against.

Helm tests skip (with the reason) only when no helm binary exists; `make` installs one with
`bash scripts/install_helm.sh .venv/bin`."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.k8s.helm import CHART_DIR, split_by_source
from tests.crd_schema import load_crd_schema

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO.parent / "shared" / "data" / "kuberay-crds" / "v1.7.0"
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayCluster": "ray.io_rayclusters.yaml"}
K8S_VERSION = "1.33.0"
PROFILES = ("h200x8", "h100x16", "h800x32-wide-ep")


def _helm_path() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    beside = Path(sys.executable).parent / "helm"
    return str(beside) if beside.is_file() else None


@dataclass(frozen=True)
class Rendered:
    rc: int
    stdout: str
    stderr: str

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        assert self.rc == 0, self.stderr
        return [d for d in yaml.safe_load_all(self.stdout) if d]

    @functools.cached_property
    def by_source(self) -> dict[str, list[dict[str, Any]]]:
        """Objects by template file name."""
        assert self.rc == 0, self.stderr
        return {name: [d for d in yaml.safe_load_all(text) if d]
                for name, text in split_by_source(self.stdout).items()}

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kind(kind)
        assert len(found) == 1, f"{len(found)} {kind} objects"
        return found[0]


@pytest.fixture(scope="session")
def helm() -> str:
    path = _helm_path()
    if path is None:
        pytest.skip("no helm binary on PATH or beside Python: run "
                    "`bash scripts/install_helm.sh .venv/bin`")
    return path


@functools.cache
def _template(helm: str, args: tuple[str, ...]) -> Rendered:
    done = subprocess.run([helm, "template", "r1serve", str(CHART_DIR), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    return Rendered(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def template(helm: str) -> Callable[..., Rendered]:
    """template(profile, "key=value", ...): `helm template` with those --set values (cached);
    profile None renders without one."""

    def run(profile: str | None, *sets: str) -> Rendered:
        args: list[str] = []
        if profile is not None:
            args += ["--set", f"profile={profile}"]
        for item in sets:
            args += ["--set", item]
        return _template(helm, tuple(args))

    return run


@pytest.fixture(scope="session")
def crd_schemas() -> dict[str, dict[str, Any]]:
    """Strict openAPIV3Schema of each KubeRay v1.7.0 kind."""
    return {kind: load_crd_schema(CRD_DIR / name) for kind, name in CRD_FILES.items()}
