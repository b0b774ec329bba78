"""One streaming chat-completion request, timed chunk by chunk."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from loadtest.endpoint import Endpoint
from loadtest.record import RequestRecord, TokenSource
from loadtest.request_spec import Message, RequestSpec


@dataclass(frozen=True)
class Sent:
    """A finished request: its record and the answer text (for resending as history)."""

    record: RequestRecord
    answer: str


class ChatClient:
    """Sends streaming `/v1/chat/completions` requests and times every SSE chunk.

    Times are taken with `time.perf_counter()` when a chunk's line has been read, and stored
    relative to `origin` (the perf_counter value of the run's start).
    """

    def __init__(self, endpoint: Endpoint, session: aiohttp.ClientSession,
                 origin: float, worker: int = 0) -> None:
        self._endpoint = endpoint
        self._session = session
        self._origin = origin
        self._worker = worker
        self._headers = endpoint.headers()
        self._timeout = aiohttp.ClientTimeout(total=endpoint.request_timeout_s)

    def body(self, spec: RequestSpec, messages: list[Message]) -> dict[str, Any]:
        """The request body: streaming, with usage in the last chunk."""
        return {
            "model": self._endpoint.model,
            "messages": [m.to_json() for m in messages],
            "max_tokens": spec.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._endpoint.extra_body,
        }

    async def send(self, spec: RequestSpec, messages: list[Message], due_s: float,
                   session_id: str, expected_prompt_tokens: int | None,
                   keep_answer: bool = False) -> Sent:
        """Send one request now and read its stream to the end. Never raises for server or
        network failures: they come back as a record with `error_kind` set."""
        payload = json.dumps(self.body(spec, messages))
        stream = _Stream(keep_answer)
        sent = time.perf_counter()
        error_kind: str | None = None
        error: str | None = None
        try:
            async with self._session.post(self._endpoint.chat_url, data=payload,
                                          headers=self._headers, timeout=self._timeout) as resp:
                if resp.status != 200:
                    error_kind = f"http_{resp.status}"
                    error = (await resp.text())[:500]
                else:
                    async for line in resp.content:
                        if stream.feed(line, time.perf_counter()):
                            break
                    error_kind, error = stream.verdict()
        except TimeoutError:
            limit = self._endpoint.request_timeout_s
            error_kind, error = "timeout", f"no complete response in {limit:g} s"
        except aiohttp.ClientConnectorError as e:
            error_kind, error = "connect", str(e)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            error_kind, error = "disconnected", str(e) or type(e).__name__
        except aiohttp.ClientError as e:
            error_kind, error = "client", f"{type(e).__name__}: {e}"
        except ValueError as e:  # a chunk that is not JSON
            error_kind, error = "bad_chunk", str(e)[:500]
        end = time.perf_counter()
        record = stream.record(
            request_id=spec.request_id, session_id=session_id, worker=self._worker, due_s=due_s,
            sent_s=sent - self._origin, end_s=end - self._origin, origin=self._origin,
            max_tokens=spec.max_tokens, expected_prompt_tokens=expected_prompt_tokens,
            error_kind=error_kind, error=error)
        return Sent(record, "".join(stream.answer))


class _Stream:
    """Accumulates one SSE stream's chunks."""

    def __init__(self, keep_answer: bool) -> None:
        self.times: list[float] = []
        self.first_answer: float | None = None
        self.reasoning_chunks = 0
        self.answer_chunks = 0
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.server_error: str | None = None
        self.keep_answer = keep_answer
        self.answer: list[str] = []

    def feed(self, line: bytes, now: float) -> bool:
        """Take one SSE line; True once the stream is over."""
        if not line.startswith(b"data:"):
            return False  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return True
        chunk = json.loads(data)
        if "error" in chunk:
            self.server_error = json.dumps(chunk["error"])[:500]
            return True
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            # DeepSeek and SGLang say reasoning_content; recent vLLM says reasoning.
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            content = delta.get("content")
            if reasoning or content:
                self.times.append(now)
            if reasoning:
                self.reasoning_chunks += 1
            if content:
                self.answer_chunks += 1
                if self.first_answer is None:
                    self.first_answer = now
                if self.keep_answer:
                    self.answer.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        return False

    def verdict(self) -> tuple[str | None, str | None]:
        if self.server_error is not None:
            return "stream_error", self.server_error
        if not self.done and self.finish_reason is None:
            return "incomplete", "the stream ended without [DONE] or a finish_reason"
        if not self.times:
            return "no_tokens", "the response carried no reasoning or answer text"
        return None, None

    def record(self, *, origin: float, **fixed: Any) -> RequestRecord:
        usage = self.usage or {}
        completion = usage.get("completion_tokens")
        details = usage.get("completion_tokens_details") or {}
        reasoning = details.get("reasoning_tokens")
        source: TokenSource = "usage"
        if completion is None:
            source = "chunks"
        if reasoning is None:
            # Without the server's split, a chunk with reasoning text counts as one token.
            reasoning = self.reasoning_chunks
            if completion is not None:
                reasoning = min(reasoning, completion)
                source = "usage+chunks"
        prompt_details = usage.get("prompt_tokens_details") or {}
        return RequestRecord(
            chunk_times_s=tuple(t - origin for t in self.times),
            first_answer_s=None if self.first_answer is None else self.first_answer - origin,
            reasoning_chunks=self.reasoning_chunks,
            answer_chunks=self.answer_chunks,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion,
            reasoning_tokens=reasoning,
            cached_tokens=prompt_details.get("cached_tokens"),
            token_source=source,
            finish_reason=self.finish_reason,
            **fixed,
        )
