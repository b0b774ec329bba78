"""Every error leaves the server as OpenAI's error object with the right status code.

`R1ServeError`s carry their own status and code; pydantic validation errors become 400s whose
`param` is the offending field's path; unknown routes are 404s; anything else is a bug, logged
with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.api.protocol import ErrorDetail, ErrorResponse
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
        self.retry_after_s = retry_after_s


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


def error_response(exc: R1ServeError) -> JSONResponse:
    """The JSON response for one of our typed errors."""
    headers = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(exc.retry_after_s)
    body = error_body(exc.status_code, exc.message, code=exc.code, param=exc.param)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise to an OpenAI error body."""

    async def typed(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, R1ServeError)
        return error_response(exc)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, code, param = describe_validation_error(exc.errors())
        return JSONResponse(error_body(400, message, code=code, param=param).model_dump(),
                            status_code=400)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = error_body(exc.status_code, str(exc.detail), code=_HTTP_CODES.get(exc.status_code))
        return JSONResponse(body.model_dump(), status_code=exc.status_code,
                            headers=dict(exc.headers or {}))

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error serving %s %s", request.method, request.url.path,
                  exc_info=exc)
        body = error_body(500, "internal server error; the server log has the details",
                          code="internal_error")
        return JSONResponse(body.model_dump(), status_code=500)

    app.add_exception_handler(R1ServeError, typed)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, bug)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

# pydantic names the member of a union it tried (`str`, `list[int]`, `function-after[...]`);
# those are not part of the field's path.
_UNION_TAG = re.compile(r"^([a-z_-]+\[.*\]|str|int|float|bool|dict|list|none)$")


def describe_validation_error(errors: list[Any]) -> tuple[str, str, str | None]:
    """(message, code, param) for the first of pydantic's errors, with `param` written as
    the field's path in the request, e.g. `messages[0].content`."""
    if not errors:
        return "invalid request", "invalid_value", None
    err = errors[0]
    loc = list(err.get("loc", ()))
    if loc and loc[0] == "body":
        loc = loc[1:]
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', '')}", \
            "invalid_json", None
    param = _path([p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p))])
    if not param:
        return f"the request body must be a JSON object: {err.get('msg')}", "invalid_value", None
    if kind == "extra_forbidden":
        return (f"unknown parameter '{param}': this server does not accept it; remove it",
                "unknown_parameter", param)
    if kind == "missing":
        return f"missing required parameter '{param}'", "missing_required_parameter", param
    return f"invalid value for '{param}': {err.get('msg')}", "invalid_value", param


def _path(loc: list[Any]) -> str | None:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None
