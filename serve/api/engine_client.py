"""`EngineClient`: all the ingress knows of engines. In-process here; over Ray Serve's
DeploymentHandle in the deployment, with the same four methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from serve.engine.base import Engine, EngineStats, GenerationRequest, TokenDelta


@runtime_checkable
class EngineClient(Protocol):
    """How the ingress reaches one or more engine replicas."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        """Stream the request's deltas (an async generator: the ingress `aclose`s it when the
        client goes away). Raises `InvalidRequestError`/`ContextLengthError` before the first
        delta for input no engine can serve, `EngineDeadError` when no engine is up."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop the request and free its KV pages; a no-op for an unknown or finished id."""
        ...

    async def health(self) -> None:
        """Return when some engine can serve; raise `EngineDeadError` when none can."""
        ...

    async def replica_stats(self) -> dict[str, EngineStats]:
        """Each replica's latest stats, keyed by replica id."""
        ...


class LocalEngineClient:
    """An `EngineClient` over one engine in this process (replica id "local")."""

    replica_id = "local"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        return self.engine.generate(request)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def health(self) -> None:
        await self.engine.health()

    async def replica_stats(self) -> dict[str, EngineStats]:
        return {self.replica_id: self.engine.stats()}
