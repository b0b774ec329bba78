"""`BodyLimit`: a request body over the server's limit is answered with 413 before any of it
is parsed, and a body within it is read whole before the app sees it.

Parsing and tokenizing cost time in proportion to the body; one body of megabytes would hold
the ingress for seconds. A declared `Content-Length` over the limit is refused without reading
a byte; a chunked body is read only up to the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.http_errors import error_response
from serve.api.request_id import request_id_of
from serve.errors import R1ServeError


class PayloadTooLargeError(R1ServeError):
    """The request body is over the server's limit (HTTP 413)."""

    status_code = 413
    code = "request_too_large"


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of body per HTTP request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await error_response(self._too_large(declared), request_id_of(scope))(
                scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: no one to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await error_response(self._too_large(None), request_id_of(scope))(
                    scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # after the body, only a disconnect can come
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, declared: int | None) -> PayloadTooLargeError:
        size = "" if declared is None else f" ({declared} bytes)"
        return PayloadTooLargeError(
            f"the request body{size} is over this server's limit of {self.max_bytes} bytes; "
            "send a shorter prompt (operators: api.max_body_bytes)")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server in front rejects it; count what arrives instead
    return None
