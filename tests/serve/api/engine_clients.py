"""Engine clients the API tests serve through, without an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

from serve.engine.base import EngineStats, GenerationRequest, TokenDelta, Usage


class OneTokenClient:
    """An engine that answers every request with one token at once, counting the requests
    it started."""

    def __init__(self) -> None:
        self.started = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        self.started += 1
        yield TokenDelta(request.request_id, (100,), "t", finish_reason="length",
                         usage=Usage(len(request.prompt_token_ids), 1, 0))

    async def abort(self, request_id: str) -> None:
        pass

    async def health(self) -> None:
        pass

    async def replica_stats(self) -> dict[str, EngineStats]:
        return {}
