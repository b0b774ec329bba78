"""Server-sent events as OpenAI streams them: `data: <json>\\n\\n` per chunk, then
`data: [DONE]\\n\\n`; and a streaming response that always releases what the stream holds."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence

from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def sse_event(payload: BaseModel | str) -> bytes:
    """One event carrying a pydantic model (as JSON) or a preformatted JSON string."""
    data = payload if isinstance(payload, str) else payload.model_dump_json()
    return f"data: {data}\n\n".encode()


class SSEResponse(StreamingResponse):
    """A `text/event-stream` response that runs `on_close` callbacks however it ends.

    Starlette cancels the body iterator when the client goes away, but a generator suspended
    at a `yield` (or never started) is then neither resumed nor closed, and its `finally`
    would wait for the garbage collector. Engine requests must be aborted now, so the
    response closes the iterator itself and then runs the callbacks, which are synchronous
    so that a pending cancellation cannot interrupt them.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes],
                 on_close: Sequence[Callable[[], None]] = ()) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        self._content = content
        self._on_close = list(on_close)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_or_gone() -> Message:
            # Behind Ray Serve, reading a connection its proxy has dropped raises
            # (TaskCancelledError): the client is gone, as a disconnect message would say.
            try:
                return await receive()
            except Exception:
                return {"type": "http.disconnect"}

        try:
            await super().__call__(scope, receive_or_gone, send)
        finally:
            self.close()
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()

    def close(self) -> None:
        """Run the callbacks once; safe to call again."""
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from running
                log.exception("stream close callback failed")
