"""`Dispatcher`: runs one admitted HTTP request's engine requests and ties their lifetime to
the HTTP exchange.

Whatever happens — success, an engine error, a timeout, the client hanging up — the engine
requests are stopped, the admission slot is released and the outcome is recorded, exactly
once. Streaming responses send their headers with the first token, so that an error the engine
raises before its first delta (bad input, overflow, a dead engine) still gets its own status
code; errors after that are sent in-band as an SSE error event, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Protocol, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from serve.api.admission import Admission
from serve.api.choice_streams import ChoiceStreams
from serve.api.engine_client import EngineClient
from serve.api.http_errors import public_error
from serve.api.metrics import ApiMetrics, RequestObserver
from serve.api.request_id import request_id_of
from serve.api.responses import UsageInfo
from serve.api.sse import DONE, SSEResponse, sse_event
from serve.engine.base import GenerationRequest, TokenDelta
from serve.errors import R1ServeError

log = logging.getLogger(__name__)

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"
DISCONNECT_POLL_S = 0.25


class Renderer(Protocol):
    """Turns one endpoint's engine deltas into OpenAI objects."""

    def push(self, index: int, delta: TokenDelta) -> list[BaseModel]:
        """Take the next delta of choice `index`; return the stream chunks to send now
        (none when the response is not streamed)."""
        ...

    def final_chunks(self) -> list[BaseModel]:
        """Chunks after every choice finished (the usage chunk, when asked for)."""
        ...

    def response(self) -> BaseModel:
        """The whole non-streamed response."""
        ...

    def usage(self) -> UsageInfo:
        """Usage so far, summed over choices."""
        ...


class _ClientGone(Exception):
    pass


class Dispatcher:
    """Admission, engine requests, disconnects, timeouts and metrics for every endpoint."""

    def __init__(self, client: EngineClient, admission: Admission, metrics: ApiMetrics,
                 timeout_s: float | None) -> None:
        self._client = client
        self._admission = admission
        self._metrics = metrics
        self._timeout_s = timeout_s

    async def respond(self, http: Request, endpoint: str,
                      requests: Sequence[GenerationRequest], renderer: Renderer,
                      stream: bool) -> Response:
        """Admit (or raise `OverloadedError`), run `requests`, and answer with JSON or SSE."""
        release = self._admission.enter()
        http.state.observed = True  # the outcome is recorded here, not by the middleware
        observer = self._metrics.observe(endpoint, len(requests))
        streams: ChoiceStreams | None = None

        def finish(status: int) -> None:
            if streams is not None:
                streams.close()
            release()
            observer.finish(status, renderer.usage() if status == 200 else None)

        try:
            deadline = (None if self._timeout_s is None
                        else asyncio.get_running_loop().time() + self._timeout_s)
            streams = ChoiceStreams(self._client, requests, deadline)
            if not stream:
                await _until_disconnect(http, _collect(streams, renderer, observer))
                body = renderer.response()
                finish(200)
                return JSONResponse(body.model_dump())
            first = await _until_disconnect(http, anext(streams))
        except _ClientGone:
            finish(CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        except asyncio.CancelledError:  # the server is going away with the request
            finish(CLIENT_CLOSED)
            raise
        except R1ServeError as e:
            finish(e.status_code)
            raise
        except BaseException:
            finish(500)
            raise
        outcome = [CLIENT_CLOSED]  # unless the stream runs to its end
        events = _events(first, streams, renderer, observer, outcome,
                         request_id_of(http.scope))
        return SSEResponse(events, on_close=[lambda: finish(outcome[0])])


async def _collect(streams: ChoiceStreams, renderer: Renderer,
                   observer: RequestObserver) -> None:
    async for index, delta in streams:
        observer.delta(index, len(delta.token_ids), delta.finish_reason is not None)
        renderer.push(index, delta)


async def _events(first: tuple[int, TokenDelta], streams: ChoiceStreams, renderer: Renderer,
                  observer: RequestObserver, outcome: list[int],
                  request_id: str | None) -> AsyncIterator[bytes]:
    """The SSE body. `outcome[0]` becomes the status to record once the stream has ended."""
    try:
        index, delta = first
        while True:
            observer.delta(index, len(delta.token_ids), delta.finish_reason is not None)
            for chunk in renderer.push(index, delta):
                yield sse_event(chunk)
            try:
                index, delta = await anext(streams)
            except StopAsyncIteration:
                break
        for chunk in renderer.final_chunks():
            yield sse_event(chunk)
        outcome[0] = 200
    except R1ServeError as e:  # the headers are out: report the error in-band
        outcome[0] = e.status_code
        yield sse_event(public_error(e, request_id))
    except Exception:
        log.exception("request %s: streaming response failed", request_id)
        outcome[0] = 500
        yield sse_event(public_error(R1ServeError("unhandled error"), request_id))
    yield DONE


async def _until_disconnect(http: Request, work: Awaitable[T]) -> T:
    """Await `work`, polling the connection; raise `_ClientGone` (cancelling `work`) when the
    client disconnects first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if task.done():
                return task.result()
            if await _client_gone(http):
                raise _ClientGone()
    finally:
        if not task.done():
            task.cancel()


async def _client_gone(http: Request) -> bool:
    try:
        return await http.is_disconnected()
    except Exception:
        # The connection's messages cannot be read: behind Ray Serve, its proxy has dropped the
        # request (the client went away), and relaying raises (TaskCancelledError).
        log.debug("request %s: the connection is unreadable; taken as a disconnect",
                  request_id_of(http.scope), exc_info=True)
        return True
