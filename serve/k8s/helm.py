"""Renders the r1serve chart with the real `helm` binary (`helm template`): the chart is the one
definition of what runs on Kubernetes, and the k8s/ manifests and `r1serve k8s apply` both come
from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serve.errors import R1ServeError

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "r1serve"
PROFILES = ("h200x8", "h100x16", "h800x32-wide-ep", "distill-qwen-32b")
_SOURCE_PREFIX = "# Source: "


class HelmError(R1ServeError):
    """helm is missing, or `helm template` refused the chart and values (its message says why)."""

    code = "helm_error"


def find_helm(explicit: str | None = None) -> str:
    """The helm binary: `explicit`, else on PATH, else beside this Python (`.venv/bin/helm`,
    where `scripts/install_helm.sh .venv/bin` puts it)."""
    if explicit:
        if shutil.which(explicit) is None:
            raise HelmError(f"--helm {explicit}: not an executable")
        return explicit
    found = shutil.which("helm")
    if found:
        return found
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file():
        return str(beside)
    raise HelmError("helm not found on PATH or beside Python; install it with "
                    "`bash scripts/install_helm.sh .venv/bin`, or pass --helm PATH")


@dataclass(frozen=True)
class RenderRequest:
    """One `helm template` run: release, profile and value overrides."""

    profile: str
    release: str = "r1serve"
    namespace: str | None = None
    set_values: Sequence[str] = ()  # `--set KEY=VALUE` items
    values_files: Sequence[Path] = ()
    show_only: Sequence[str] = ()  # template paths, e.g. templates/rayjob-loadtest.yaml
    chart: Path = field(default=CHART_DIR)

    def args(self) -> list[str]:
        """helm arguments after `helm`."""
        args = ["template", self.release, str(self.chart), "--set", f"profile={self.profile}"]
        if self.namespace:
            args += ["--namespace", self.namespace]
        for path in self.values_files:
            args += ["--values", str(path)]
        for item in self.set_values:
            args += ["--set", item]
        for template in self.show_only:
            args += ["--show-only", template]
        return args


def run_helm(args: Sequence[str], helm: str | None = None, timeout_s: float = 120.0) -> str:
    """Run helm and return its standard output; its own error message on failure."""
    cmd = [find_helm(helm), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise HelmError(f"`helm {' '.join(args[:1])}` took longer than {timeout_s:.0f}s") from e
    if done.returncode != 0:
        raise HelmError(f"helm {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def render_text(request: RenderRequest, helm: str | None = None) -> str:
    """The multi-document YAML `helm template` prints."""
    return run_helm(request.args(), helm)


def render(request: RenderRequest, helm: str | None = None) -> list[dict[str, Any]]:
    """The chart's objects for `request`, in helm's install order."""
    return parse_objects(render_text(request, helm))


def parse_objects(text: str) -> list[dict[str, Any]]:
    """Kubernetes objects of a multi-document YAML text (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc]


def split_by_source(text: str) -> dict[str, str]:
    """`helm template` output grouped by template file name (`rayservice-r1serve.yaml` → its
    documents), each group a YAML text of its own."""
    groups: dict[str, list[str]] = {}
    for doc in text.split("\n---\n"):
        doc = doc.strip().removeprefix("---").strip()
        lines = doc.splitlines()
        if not lines or not lines[0].startswith(_SOURCE_PREFIX):
            continue
        name = Path(lines[0].removeprefix(_SOURCE_PREFIX)).name
        groups.setdefault(name, []).append(doc)
    return {name: "---\n" + "\n---\n".join(docs) + "\n" for name, docs in groups.items()}
