"""`ChoiceStreams`: one engine request per choice, merged into one stream of deltas.

Each engine stream is pumped by its own task, so `close()` can stop all of them synchronously:
it cancels the pumps, and each pump then closes its engine generator (`aclose`, which frees the
request's KV pages in the engine) and asks the client to abort the request, which also reaches
engines in other processes. Being synchronous, `close()` works even from code that is itself
being cancelled, which is how a client disconnect arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from serve.api.engine_client import EngineClient
from serve.api.http_errors import RequestTimeoutError
from serve.engine.base import GenerationRequest, TokenDelta
from serve.errors import R1ServeError

log = logging.getLogger(__name__)

# Pumps still cleaning up after close(); asyncio holds tasks weakly, so keep them alive here.
_closing: set[asyncio.Task[None]] = set()


class EngineRequestError(R1ServeError):
    """The engine failed one request after accepting it (HTTP 500)."""

    code = "engine_error"
    public_message = "the engine failed this request; the server log has the details"


class ChoiceStreams:
    """Runs `requests` concurrently and yields `(choice index, delta)` as deltas arrive.

    Ends when every request has delivered its finishing delta. Raises the first engine error,
    and `RequestTimeoutError` once the loop clock passes `deadline` (None: no deadline).
    """

    def __init__(self, client: EngineClient, requests: Sequence[GenerationRequest],
                 deadline: float | None = None) -> None:
        self._client = client
        self._deadline = deadline
        self._queue: asyncio.Queue[tuple[int, TokenDelta | Exception]] = asyncio.Queue()
        self._open = len(requests)
        self._pumps = [asyncio.create_task(self._pump(i, r), name=f"pump-{r.request_id}")
                       for i, r in enumerate(requests)]

    def __aiter__(self) -> ChoiceStreams:
        return self

    async def __anext__(self) -> tuple[int, TokenDelta]:
        if self._open == 0:
            raise StopAsyncIteration
        try:
            async with asyncio.timeout_at(self._deadline):
                index, item = await self._queue.get()
        except TimeoutError:
            raise RequestTimeoutError(
                "the request ran past the server's request timeout; ask for fewer tokens "
                "(max_tokens) or raise the server's request_timeout_s") from None
        if isinstance(item, Exception):
            raise item
        if item.error is not None:
            raise EngineRequestError(f"the engine failed this request: {item.error}")
        if item.finish_reason is not None:
            self._open -= 1
        return index, item

    def close(self) -> None:
        """Stop every request still running; idempotent and synchronous."""
        for task in self._pumps:
            if not task.done():
                task.cancel()
                _closing.add(task)
                task.add_done_callback(_closing.discard)
        self._pumps = []

    async def _pump(self, index: int, request: GenerationRequest) -> None:
        stream: AsyncIterator[TokenDelta] | None = None
        finished = False
        try:
            stream = self._client.generate(request)
            async for delta in stream:
                finished = delta.finish_reason is not None
                self._queue.put_nowait((index, delta))
                if finished:
                    return
            self._queue.put_nowait((index, EngineRequestError(
                f"the engine ended request {request.request_id} without a finish reason")))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # handed to the consumer, which maps it to an HTTP status
            self._queue.put_nowait((index, e))
        finally:
            aclose = getattr(stream, "aclose", None)  # None too when generate() itself raised
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            if not finished:
                try:
                    await self._client.abort(request.request_id)
                except Exception:
                    log.warning("aborting %s failed", request.request_id, exc_info=True)
