"""`stream_batches`: an engine's output stream as lists, so that one Ray message carries the
tokens of several engine steps.

Every item an engine replica yields to the ingress is one Ray object: serialised, reported to
the caller, fetched and deserialised. At a few milliseconds per decode step that costs the
replica, the ingress and the proxy more CPU per token than the HTTP path itself. Ray Serve
LLM batches its streams on a fixed interval (`stream_batching_interval_ms`, 50 ms by
default), which also holds back the first token. Here the first item and the last go out at
once; an item in between waits at most `interval_s` for the ones after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def stream_batches(source: AsyncIterator[T], interval_s: float) -> AsyncIterator[list[T]]:
    """Every item of `source`, in order, in lists at least `interval_s` apart.

    A list goes out as soon as an item is ready and `interval_s` has passed since the last
    list, or as soon as `source` ends. An error of `source` is raised after the items before
    it. Closing this generator closes `source` (at any interval), which is how a cancelled
    request reaches the engine.
    """
    if interval_s <= 0:
        try:
            async for item in source:
                yield [item]
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    loop = asyncio.get_running_loop()
    pending: list[T] = []
    ready = asyncio.Event()

    async def read() -> None:
        try:
            async for item in source:
                pending.append(item)
                ready.set()
        finally:
            ready.set()

    reader = asyncio.create_task(read())
    sent_at = -math.inf  # the first item goes at once
    try:
        while True:
            await ready.wait()
            wait = sent_at + interval_s - loop.time()
            if wait > 0 and not reader.done():
                await asyncio.wait((reader,), timeout=wait)
            ready.clear()
            if pending:
                batch = pending[:]
                pending.clear()
                sent_at = loop.time()
                yield batch
            if reader.done() and not pending:
                reader.result()  # the source's own error, after everything it yielded
                return
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
