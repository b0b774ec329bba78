"""Regenerate what is derived from the chart and the config schema:

- `k8s/<profile>/<template>.yaml`: the chart rendered for each profile with default values, for
  `kubectl apply -f` users; `k8s/loadtest/rayjob-loadtest.yaml`: the load-test RayJob;
- the `$defs` of `helm/r1serve/values.schema.json`: R1ServeConfig's JSON schema, so that
  `helm install` rejects a misspelt r1serve config key the way `r1serve deploy` does.

    python -m serve.k8s.render_manifests           # write
    python -m serve.k8s.render_manifests --check   # exit 1 and list what drifted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from serve.config import R1ServeConfig
from serve.errors import R1ServeError
from serve.k8s.helm import (
    CHART_DIR,
    PROFILES,
    REPO_ROOT,
    RenderRequest,
    render_text,
    split_by_source,
)

MANIFESTS_DIR = REPO_ROOT / "k8s"
SCHEMA_PATH = CHART_DIR / "values.schema.json"
LOADTEST_TEMPLATE = "templates/rayjob-loadtest.yaml"
HEADER = ("# Rendered from helm/r1serve by `python -m serve.k8s.render_manifests`; do not edit.\n"
          "# Values: {values}\n")


def config_schema_defs() -> dict[str, Any]:
    """R1ServeConfig and its sections as JSON-schema `$defs` (referenced as
    `#/$defs/R1ServeConfig` by the chart's `config` values)."""
    schema = R1ServeConfig.model_json_schema()
    defs = schema.pop("$defs", {})
    return {**defs, "R1ServeConfig": schema}


def expected_schema_text(current: str) -> str:
    """values.schema.json with its `$defs` regenerated; the rest is maintained by hand."""
    schema = json.loads(current)
    schema["$defs"] = config_schema_defs()
    return json.dumps(schema, indent=2) + "\n"


def expected_manifests(helm: str | None = None) -> dict[Path, str]:
    """Every file under k8s/ that the chart renders to, by path (README.md excluded)."""
    files: dict[Path, str] = {}
    for profile in PROFILES:
        text = render_text(RenderRequest(profile=profile), helm)
        header = HEADER.format(values=f"--set profile={profile}")
        for name, docs in split_by_source(text).items():
            files[MANIFESTS_DIR / profile / name] = header + docs
    loadtest = RenderRequest(profile=PROFILES[0], set_values=("loadtest.enabled=true",),
                             show_only=(LOADTEST_TEMPLATE,))
    header = HEADER.format(values=f"--set profile={PROFILES[0]} --set loadtest.enabled=true")
    for name, docs in split_by_source(render_text(loadtest, helm)).items():
        files[MANIFESTS_DIR / "loadtest" / name] = header + docs
    return files


def drift(helm: str | None = None) -> list[str]:
    """Paths (relative to the repo) that differ from a fresh render, are missing, or are stale."""
    problems: list[str] = []
    expected = expected_manifests(helm)
    expected[SCHEMA_PATH] = expected_schema_text(SCHEMA_PATH.read_text())
    for path, text in expected.items():
        if not path.exists() or path.read_text() != text:
            problems.append(str(path.relative_to(REPO_ROOT)))
    for path in _rendered_files():
        if path not in expected:
            problems.append(f"{path.relative_to(REPO_ROOT)} (stale: no longer rendered)")
    return sorted(problems)


def write(helm: str | None = None) -> list[Path]:
    """Write every derived file; remove stale rendered ones. Returns the paths written."""
    # The schema first: helm validates values against it while rendering the manifests.
    SCHEMA_PATH.write_text(expected_schema_text(SCHEMA_PATH.read_text()))
    expected = expected_manifests(helm)
    expected[SCHEMA_PATH] = SCHEMA_PATH.read_text()
    for path in _rendered_files():
        if path not in expected:
            path.unlink()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(expected)


def _rendered_files() -> list[Path]:
    dirs = [MANIFESTS_DIR / p for p in PROFILES] + [MANIFESTS_DIR / "loadtest"]
    return [f for d in dirs if d.is_dir() for f in sorted(d.glob("*.yaml"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.k8s.render_manifests",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a file differs from a fresh render")
    p.add_argument("--helm", help="helm binary (default: on PATH or beside this Python)")
    ns = p.parse_args(argv)
    try:
        if ns.check:
            problems = drift(ns.helm)
            for problem in problems:
                print(f"out of date: {problem}")
            if problems:
                print("regenerate with: python -m serve.k8s.render_manifests", file=sys.stderr)
            return 1 if problems else 0
        for path in write(ns.helm):
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    except R1ServeError as e:
        print(f"render_manifests: error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
