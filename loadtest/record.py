"""What the generator measured for one request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

TokenSource = Literal["usage", "usage+chunks", "chunks"]

#: The error kind of a scheduled request the client never sent; not a server failure.
NOT_SENT = "not_sent"


@dataclass(frozen=True)
class RequestRecord:
    """One request's timestamps and token counts.

    Times are seconds relative to the run's common start. `due_s` is when the schedule wanted
    the request sent and `sent_s` when the client actually sent it; every latency below starts
    at `sent_s`, so time the client spent behind schedule is reported on its own
    (`client_queue_s`) and never counted as server latency.
    """

    request_id: str
    session_id: str
    worker: int
    due_s: float
    sent_s: float
    end_s: float
    max_tokens: int
    #: Arrival times of chunks that carried a token (reasoning or answer), in order.
    chunk_times_s: tuple[float, ...] = ()
    #: Arrival time of the first chunk with answer (`delta.content`) text.
    first_answer_s: float | None = None
    reasoning_chunks: int = 0
    answer_chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    token_source: TokenSource = "chunks"
    expected_prompt_tokens: int | None = None
    finish_reason: str | None = None
    error_kind: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def client_queue_s(self) -> float:
        """How late the client sent the request against its schedule."""
        return self.sent_s - self.due_s

    @property
    def ttft_s(self) -> float | None:
        """Time to the first token of any kind (reasoning or answer)."""
        return self.chunk_times_s[0] - self.sent_s if self.chunk_times_s else None

    @property
    def ttfat_s(self) -> float | None:
        """Time to the first answer token, i.e. past the reasoning."""
        return None if self.first_answer_s is None else self.first_answer_s - self.sent_s

    @property
    def e2e_s(self) -> float:
        """From sending the request to the end of its response stream."""
        return self.end_s - self.sent_s

    @property
    def output_tokens(self) -> int:
        """The server's completion tokens if it said, else the token chunks we counted."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.reasoning_chunks + self.answer_chunks

    @property
    def answer_tokens(self) -> int:
        return self.output_tokens - (self.reasoning_tokens or 0)

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first: (last token − first token) / (n − 1)."""
        n = self.output_tokens
        if len(self.chunk_times_s) < 2 or n < 2:
            return None
        return (self.chunk_times_s[-1] - self.chunk_times_s[0]) / (n - 1)

    @property
    def itls_s(self) -> list[float]:
        """Gaps between consecutive token-carrying chunks."""
        t = self.chunk_times_s
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with the derived latencies alongside the raw fields."""
        raw = asdict(self)
        raw["chunk_times_s"] = [round(t, 6) for t in self.chunk_times_s]
        for name in ("ttft_s", "ttfat_s", "e2e_s", "tpot_s", "client_queue_s", "output_tokens",
                     "answer_tokens"):
            raw[name] = getattr(self, name)
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RequestRecord:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        kwargs["chunk_times_s"] = tuple(kwargs.get("chunk_times_s", ()))
        return cls(**kwargs)
