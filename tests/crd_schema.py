"""Validate objects against a CustomResourceDefinition's openAPIV3Schema with `jsonschema`, as
the API server would: the CRD dialect's extensions are turned into plain JSON schema first.

- Unknown fields: the API server silently prunes fields a structural schema does not declare,
  so a misspelt field would vanish without error. Here every object schema that lists
  `properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
  rejects unknown fields instead.
- `x-kubernetes-int-or-string: true` means integer or string.
- `nullable: true` admits null.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def structural(schema: Any) -> Any:
    """The CRD schema as strict JSON schema (see the module docstring)."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = structural(value)
        elif key in _SCHEMA_LISTS:
            out[key] = [structural(sub) for sub in value]
        else:
            out[key] = value
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def load_crd_schema(path: Path, version: str = "v1") -> dict[str, Any]:
    """The strict openAPIV3Schema of `version` in the CRD file at `path`."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD files are megabytes
    crd = yaml.load(path.read_text(), Loader=loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return structural(v["schema"]["openAPIV3Schema"])
    raise KeyError(f"{path}: no version {version}")


def validation_errors(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every violation, as `path: message`; empty when the object is valid."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(obj))
