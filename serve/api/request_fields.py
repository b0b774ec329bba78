"""Field types of the OpenAI requests, and what their published JSON schema says.

JSON has numbers, not integers, and strings that may escape lone UTF-16 surrogates; `JsonInt`
and `Text` take them as JSON means them. A field this server cannot honour validates any value
(so that the request's `check_supported()` names it) while its schema lists only the no-op
values (`no_op_only`); cross-field rules the requests enforce are written into their schema
(`rules`, `unless`), so that /openapi.json describes what the server accepts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode_text(value: str) -> str:
    # JSON may escape a lone UTF-16 surrogate; Python keeps it, and no tokenizer can encode it.
    if not value.isascii() and _SURROGATE.search(value):
        raise ValueError("the text contains a lone UTF-16 surrogate (an escape from "
                         "\\ud800 to \\udfff without its pair), which is not Unicode text")
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]


def _integral(value: Any) -> Any:
    # JSON has numbers, not integers: 2.0 is the integer 2 (JSON Schema agrees); 2.5 and
    # true stay errors.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(**bounds: int) -> Any:
    """An integer field as JSON has it, with pydantic's bounds (`ge`, `le`) in its schema."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


JsonInt = json_int()
TokenId = json_int(ge=0)


def no_op_only(*values: dict[str, Any], default: Any = None) -> Any:
    """A known OpenAI field this server cannot honour: validation takes any value so that
    `check_supported()` can name the field, and the published schema lists only `values`
    (JSON schemas) and null, the values that are served."""
    return Field(default=default, json_schema_extra={"anyOf": [*values, {"type": "null"}]})


EMPTY_LIST = {"type": "array", "maxItems": 0}


def no_empty_lists(schema: dict[str, Any]) -> None:
    """In a field's published schema, no list (nor a list in it) is empty: the field's own
    validator refuses them, naming what to send."""
    for member in schema.get("anyOf", ()):
        if member.get("type") == "array":
            member["minItems"] = 1
            no_empty_lists({"anyOf": [member.get("items", {})]})


NONE = {"const": "none"}


def unless(field: str, then: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema rule: unless `field` is true, the properties in `then` hold."""
    return {"if": {"not": {"required": [field], "properties": {field: {"const": True}}}},
            "then": {"properties": then}}


def rules(*rules: dict[str, Any]) -> Any:
    """`json_schema_extra` adding cross-field rules (the ones `check_supported()` enforces)
    to a request's published schema, after those of the classes it extends."""
    def extra(schema: dict[str, Any]) -> None:
        schema.setdefault("allOf", []).extend(rules)
    return extra
