"""values.yaml documents every value, values.schema.json matches it, and values that must be
set fail the render with a message that says what to set."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from serve.k8s.helm import CHART_DIR
from serve.k8s.render_manifests import config_schema_defs

VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(\s|$)")


def _documented_paths(text: str) -> set[tuple[str, ...]]:
    """Key paths whose line has a `# --` comment in the comment block right above it."""
    documented: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = _KEY.match(line)
        if not match:
            comments = [] if not stripped else comments
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if any(c.startswith("# --") for c in comments):
            documented.add(tuple(k for _, k in stack))
        comments = []
    return documented


def _value_paths(values: dict[str, Any], schema: dict[str, Any],
                 prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the chart's values: keys the schema declares with fixed `properties`. Maps the
    schema leaves open (nodeSelector, an r1serve `config`) are one value each."""
    paths = []
    for key, value in values.items():
        sub = schema.get("properties", {}).get(key) or (
            schema.get("additionalProperties") if isinstance(
                schema.get("additionalProperties"), dict) else None)
        assert sub is not None, f"{'.'.join(prefix + (key,))} is not in values.schema.json"
        if isinstance(value, dict) and "properties" in sub and "$ref" not in sub:
            paths += _value_paths(value, sub, prefix + (key,))
        else:
            paths.append(prefix + (key,))
    return paths


def test_every_value_has_a_description() -> None:
    documented = _documented_paths(VALUES_TEXT)
    missing = [".".join(p) for p in _value_paths(VALUES, SCHEMA) if p not in documented]
    assert not missing, f"values without a `# --` description: {missing}"


def test_defaults_validate_against_the_schema() -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(VALUES)


def test_schema_declares_exactly_the_values() -> None:
    def declared(schema: dict[str, Any], values: dict[str, Any], prefix: str = "") -> list[str]:
        problems = []
        for key, sub in schema.get("properties", {}).items():
            if key == "global":  # helm passes it to every chart
                continue
            if key not in values:
                problems.append(f"schema declares {prefix}{key}, values.yaml has no such value")
            elif "properties" in sub and isinstance(values[key], dict):
                problems += declared(sub, values[key], f"{prefix}{key}.")
        return problems

    assert not declared(SCHEMA, VALUES)
    _value_paths(VALUES, SCHEMA)  # the other direction: every value is declared
    assert SCHEMA["additionalProperties"] is False


def test_config_schema_is_r1serve_config() -> None:
    assert SCHEMA["$defs"] == json.loads(json.dumps(config_schema_defs()))
    assert SCHEMA["properties"]["config"] == {"$ref": "#/$defs/R1ServeConfig"}


@pytest.mark.parametrize(("sets", "message"), [
    ((), "profile is required: --set profile=h200x8"),
    (("profile=b300x8",), 'profile "b300x8" is unknown'),
    (("profile=custom",), "profiles.custom.nodesPerReplica is required with profile=custom"),
    (("profile=custom", "profiles.custom.nodesPerReplica=2"),
     "config.engine.backend_args.profile is required with profile=custom"),
    (("profile=h200x8", "config.engine.nodes_per_replica=2"),
     "config.engine.nodes_per_replica=2 contradicts profile h200x8 (1)"),
    (("profile=h200x8", "config.autoscaling.min_replicas=3"),
     "config.autoscaling.min_replicas (3) exceeds max_replicas (2)"),
    (("profile=h200x8", "ingress.enabled=true"), "ingress.host is required"),
    (("profile=h200x8", "gateway.enabled=true"), "gateway.parentRefs is required"),
    (("profile=h200x8", "weights.storage=hostPath", "weights.download.mode=initContainer"),
     "weights.hostPath is required with weights.storage=hostPath"),
    (("profile=h200x8", "weights.storage=hostPath", "weights.hostPath=/m"),
     "weights.download.mode=job needs weights.storage=pvc"),
    (("profile=h200x8", "apiKeys.existingSecret="), "apiKeys.existingSecret is required"),
    (("profile=h200x8", "config.engine.ep_sise=8"), "additional properties 'ep_sise'"),
    (("profile=h200x8", "config.autoscaling.targets.downscale_delay_s=60"),
     "additional properties 'downscale_delay_s'"),
    (("profile=h200x8", "image.tag=latest"), "/image/tag"),
])
def test_missing_or_wrong_values_fail_with_their_message(template, sets: tuple[str, ...],
                                                         message: str) -> None:
    args = [s for s in sets if not s.startswith("profile=")]
    profile = next((s.split("=", 1)[1] for s in sets if s.startswith("profile=")), None)
    rendered = template(profile, *args)
    assert rendered.rc != 0
    assert message in rendered.stderr


def test_values_file_is_in_the_chart() -> None:
    assert Path(CHART_DIR / "values.yaml").is_file()


def test_the_token_load_targets_shown_in_each_profile_are_the_defaults():
    """Each profile lists every token-load knob 'at its default': that must stay true when a
    default changes."""
    from dataclasses import asdict

    from serve.autoscaling.targets import DERIVED, ScalingTargets

    defaults = {k: v for k, v in asdict(ScalingTargets()).items() if k not in DERIVED}
    for name, profile in VALUES["profiles"].items():
        targets = (profile.get("config") or {}).get("autoscaling", {}).get("targets")
        if targets is not None:
            assert targets == defaults, name
