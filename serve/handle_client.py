"""`HandleEngineClient`: the ingress's view of the engine deployment, over a Serve handle."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from ray import exceptions as ray_exceptions
from ray.serve import context as serve_context
from ray.serve.handle import DeploymentHandle

from serve.engine.base import EngineStats, GenerationRequest, TokenDelta
from serve.errors import EngineDeadError, R1ServeError


def _unwrap(e: BaseException) -> BaseException:
    """Our typed errors raised inside a replica come back wrapped; surface the original. (What
    Ray says of a dead actor names its id, pid and node: the HTTP edge logs 5xx messages and
    shows clients a stable one.)"""
    cause = getattr(e, "cause", None)
    if isinstance(cause, R1ServeError):
        return cause
    if isinstance(e, ray_exceptions.RayActorError | ray_exceptions.ActorDiedError):
        return EngineDeadError(f"the engine replica died: {e}")
    return e


@contextmanager
def own_internal_request_id(internal_id: str) -> Iterator[None]:
    """Handle calls made inside get `internal_id` as their Serve internal request id.

    A handle call takes its internal id from the Serve request being served, here the HTTP
    request, so all the engine requests of one HTTP request (its choices, its prompts) would
    share one. Serve's router keeps its pending requests by that id: the second of two calls
    pending at once is never routed, and its choice never answers. The request router's own
    bookkeeping (`PrefixAwareRouter`) is keyed by it too. Every engine request therefore gets
    its own, set in Serve's request context (which `handle.remote()` reads synchronously; it
    has no option for it) and restored at once.
    """
    var = serve_context._serve_request_context
    current = serve_context._get_serve_request_context()
    token = var.set(dataclasses.replace(current, _internal_request_id=internal_id))
    try:
        yield
    finally:
        var.reset(token)


class HandleEngineClient:
    """Streams from whichever engine replica the router picks; cancelling the stream (client
    gone, or `abort`) cancels the replica's generator, which aborts the engine request."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)
        self._inflight: dict[str, object] = {}

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        # Engine request ids are unique (a uuid per response, a suffix per choice).
        with own_internal_request_id(request.request_id):
            stream = self._streaming.generate.remote(request)
        self._inflight[request.request_id] = stream
        finished = False
        try:
            async for batch in stream:  # EngineDeployment.generate sends lists of deltas
                for delta in batch:
                    finished = delta.finish_reason is not None
                    yield delta
        except R1ServeError:
            raise
        except Exception as e:
            raise _unwrap(e) from None
        finally:
            self._inflight.pop(request.request_id, None)
            if not finished:
                stream.cancel()

    async def abort(self, request_id: str) -> None:
        stream = self._inflight.pop(request_id, None)
        if stream is not None:
            stream.cancel()

    async def health(self) -> None:
        try:
            await self._handle.check_health.remote()
        except Exception as e:
            raise EngineDeadError(f"no engine replica can serve: {_unwrap(e)}") from None

    async def replica_stats(self) -> dict[str, EngineStats]:
        """Stats of the replica that answers (each call may reach a different one)."""
        replica_id, stats = await self._handle.stats.remote()
        return {replica_id: stats}
