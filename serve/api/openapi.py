"""The OpenAPI document the server serves, true to what it does: each route lists the statuses
it answers with OpenAI's error object (never FastAPI's 422, which this server does not send),
streamed completions are `text/event-stream`, `/metrics` is Prometheus text, and `model` can
only be the served model's name.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serve.api.responses import ChatCompletionChunk, CompletionChunk, ErrorResponse

_WHY = {
    400: "The request is invalid; `error.param` names the field.",
    401: "No API key, or an unknown one (when the server has keys).",
    404: "No such model.",
    408: "The request ran past the server's request timeout.",
    413: "The request body is over the server's limit.",
    429: "Too many requests in flight; retry after `Retry-After` seconds.",
    503: "No engine replica can serve now; retry after `Retry-After` seconds.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: an OpenAI error body for each of `statuses`."""
    return {s: {"model": ErrorResponse, "description": _WHY[s]} for s in statuses}


def completion_responses(model: type[BaseModel], chunk: type[BaseModel]
                         ) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a completion route: JSON, or with `stream: true` server-sent events,
    each a `chunk` or an error (the stream's last words on a failure), then `[DONE]`.
    Before OpenAPI 3.2, an event stream's `schema` describes one event."""
    data = {"anyOf": [{"const": "[DONE]"}, {
        "type": "string", "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [{"$ref": _REF + chunk.__name__},
                                    {"$ref": _REF + ErrorResponse.__name__}]}}]}
    event = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {200: {"model": model, "description": "The completion; with `stream: true`, "
                  "server-sent events of chunks ending with `data: [DONE]`",
                  "content": {"text/event-stream": {"schema": event}}},
            **errors(400, 401, 404, 408, 413, 429, 503)}


_REF = "#/components/schemas/"


METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {200: {
    "description": "Prometheus text exposition",
    "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}}


def install_openapi(app: FastAPI, served_model_name: str, max_tokens_cap: int,
                    vocab_size: int) -> None:
    """Serve the document described above at /openapi.json, with this server's limits:
    `max_tokens` (and `max_completion_tokens`) at most its cap, token ids in its vocabulary."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
                    for p in operation.get("parameters", ()):
                        if p["name"] == "model":
                            p["schema"] = {"type": "string", "enum": [served_model_name]}
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            # Chunks appear only inside event streams, which FastAPI does not read.
            _, chunk_schemas = models_json_schema(
                [(m, "serialization") for m in (ChatCompletionChunk, CompletionChunk)],
                ref_template=_REF + "{model}")
            for name, definition in chunk_schemas.get("$defs", {}).items():
                schemas.setdefault(name, definition)
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for name in ("ChatCompletionRequest", "CompletionRequest"):
                fields = schemas.get(name, {}).get("properties", {})
                if "model" in fields:
                    fields["model"].update({"type": "string", "enum": [served_model_name]})
                for cap in ("max_tokens", "max_completion_tokens"):
                    for member in fields.get(cap, {}).get("anyOf", ()):
                        if member.get("type") == "integer":
                            member["maximum"] = max_tokens_cap
                _token_ids(fields.get("prompt", {}), vocab_size)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _token_ids(schema: dict[str, Any], vocab_size: int) -> None:
    """Bound every integer (a token id) in a prompt's schema by the vocabulary."""
    if schema.get("type") == "integer":
        schema["maximum"] = vocab_size - 1
    for member in schema.get("anyOf", ()):
        _token_ids(member, vocab_size)
    if isinstance(schema.get("items"), dict):
        _token_ids(schema["items"], vocab_size)
