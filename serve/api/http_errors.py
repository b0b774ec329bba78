"""Every error leaves the server as OpenAI's error object with the right status code.

`R1ServeError`s carry their own status and code; pydantic validation errors become 400s whose
`param` is the offending field's path; a body that is not JSON is a 400 that says why; unknown
routes are 404s. Anything else is a bug, which the ingress's middleware logs with its traceback
and answers with a bare 500. A server error (5xx) shows the client a stable message and the
request id; what went wrong is logged under that id (`public_error`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.api.request_id import request_id_of
from serve.api.responses import ErrorDetail, ErrorResponse
from serve.errors import R1ServeError

log = logging.getLogger(__name__)


class ModelNotFoundError(R1ServeError):
    """The request names a model this server does not serve (HTTP 404)."""

    status_code = 404
    code = "model_not_found"


class OverloadedError(R1ServeError):
    """Too many requests in flight (HTTP 429 with Retry-After)."""

    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s: int | None = retry_after_s


class RequestTimeoutError(R1ServeError):
    """The request ran past the server's request timeout (HTTP 408, as Ray Serve answers)."""

    status_code = 408
    code = "request_timeout"


def error_type(status: int) -> str:
    """OpenAI's `type` for a status: client errors are `invalid_request_error` as OpenAI
    reports them, except the classes a client handles differently."""
    if status == 408:
        return "timeout_error"
    if status == 429:
        return "rate_limit_error"
    if status == 503:
        return "service_unavailable_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(status: int, message: str, *, code: str | None = None,
               param: str | None = None) -> ErrorResponse:
    return ErrorResponse(error=ErrorDetail(message=message, type=error_type(status),
                                           param=param, code=code))


def public_error(exc: R1ServeError, request_id: str | None) -> ErrorResponse:
    """The error body a client sees. A server error's own message is logged under the request
    id, and the client gets the error's `public_message` with that id."""
    if exc.status_code < 500:
        return error_body(exc.status_code, exc.message, code=exc.code, param=exc.param)
    log.warning("request %s: %d %s: %s", request_id, exc.status_code, exc.code, exc.message)
    return error_body(exc.status_code, f"{exc.public_message} (request id {request_id})",
                      code=exc.code)


def error_response(exc: R1ServeError, request_id: str | None = None) -> JSONResponse:
    """The JSON response for one of our typed errors."""
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return _json(public_error(exc, request_id), exc.status_code, headers)


def _json(body: ErrorResponse, status: int, headers: dict[str, str] | None = None
          ) -> JSONResponse:
    # ASCII JSON: a message may quote what the client sent, lone surrogates included, which
    # UTF-8 cannot encode.
    return _AsciiJSONResponse(body.model_dump(), status_code=status, headers=headers)


class _AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise to an OpenAI error body."""

    async def typed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, R1ServeError)
        return error_response(exc, request_id_of(request.scope))

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, code, param = describe_validation_error(
            exc.errors(), request.headers.get("content-type"))
        return _json(error_body(400, message, code=code, param=param), 400)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read
            # the body as JSON
            return _json(error_body(400, _unreadable_body(exc.__cause__), code="invalid_json"),
                         400)
        body = error_body(exc.status_code, str(exc.detail), code=_HTTP_CODES.get(exc.status_code))
        return _json(body, exc.status_code, dict(exc.headers or {}))

    app.add_exception_handler(R1ServeError, typed)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

# pydantic names the member of a union it tried (`str`, `list[int]`, `function-after[...]`);
# those are not part of the field's path.
_UNION_TAG = re.compile(r"^([a-z_-]+\[.*\]|str|int|float|bool|dict|list|none)$")


def describe_validation_error(errors: list[Any], content_type: str | None = None
                              ) -> tuple[str, str, str | None]:
    """(message, code, param) for the most telling of pydantic's errors, with `param` written
    as the field's path in the request, e.g. `messages[0].content`. `content_type` is the
    request's, to tell a body sent as something other than JSON."""
    if not errors:
        return "invalid request", "invalid_value", None
    # A value that fails every member of a union fails each with its own error; the one that
    # is not a plain type mismatch says what is wrong (`stop` with too many strings is not
    # "a valid string" either).
    err = next((e for e in errors if not e.get("type", "").endswith("_type")), errors[0])
    loc = list(err.get("loc", ()))
    if loc and loc[0] == "body":
        loc = loc[1:]
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', '')}", \
            "invalid_json", None
    param = _path([p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p))])
    if kind == "string_unicode":  # pydantic's own check, on keys (our `Text` checks values)
        return ("a key in the request body is not Unicode text: it contains a lone UTF-16 "
                "surrogate escape (\\ud800 to \\udfff without its pair)", "invalid_value",
                param)
    if not param:
        if content_type and not _is_json(content_type):
            return (f"the request body must be JSON sent with 'Content-Type: application/json', "
                    f"not {content_type!r}", "invalid_content_type", None)
        return f"the request body must be a JSON object: {err.get('msg')}", "invalid_value", None
    if kind == "extra_forbidden":
        return (f"unknown parameter '{param}': this server does not accept it; remove it",
                "unknown_parameter", param)
    if kind == "missing":
        return f"missing required parameter '{param}'", "missing_required_parameter", param
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"invalid value for '{param}': {message}", "invalid_value", param


def _is_json(content_type: str) -> bool:
    subtype = content_type.split(";")[0].strip().lower().rpartition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def _unreadable_body(cause: BaseException | None) -> str:
    """Why FastAPI could not parse a body as JSON (it says only that it could not)."""
    if isinstance(cause, UnicodeDecodeError):
        return "the request body is not valid JSON: it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "the request body is not valid JSON that can be read: it nests too deeply"
    return "the request body is not valid JSON"


def _path(loc: list[Any]) -> str | None:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None
