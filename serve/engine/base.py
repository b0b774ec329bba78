"""The engine interface every backend implements, and the data that crosses it.

The ingress tokenizes once and sends a `GenerationRequest`; the engine streams `TokenDelta`s
back. The router and the autoscaler see only `EngineStats`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from serve.errors import ContextLengthError, InvalidRequestError

FinishReason = str  # "stop" | "length" | "abort" | "error"


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token and when to stop."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    skip_special_tokens: bool = True

    def validate(self) -> None:
        """Raise `InvalidRequestError` naming the first parameter out of range."""
        checks = [
            ("max_tokens", self.max_tokens >= 1, "must be at least 1"),
            ("temperature", 0.0 <= self.temperature <= 100.0, "must be in [0, 100]"),
            ("top_p", 0.0 < self.top_p <= 1.0, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be 0 (off) or positive"),
            ("min_p", 0.0 <= self.min_p <= 1.0, "must be in [0, 1]"),
            ("top_logprobs", 0 <= self.top_logprobs <= 20, "must be in [0, 20]"),
            ("stop", all(isinstance(s, str) and s for s in self.stop), "must be non-empty strings"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise InvalidRequestError(f"{name}={getattr(self, name)!r} {why}", param=name)


@dataclass(frozen=True)
class GenerationRequest:
    """One request as the engine sees it: token ids in, sampling parameters, an id."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    expected_output_tokens: int | None = None  # the caller's guess, for routing and scaling
    session_id: str | None = None  # the client's conversation id, for replica affinity

    def validate(self, context_length: int, vocab_size: int | None = None) -> None:
        """Raise `InvalidRequestError` (or `ContextLengthError`) for what no engine can serve:
        an empty prompt, token ids outside the vocabulary, sampling out of range, or prompt plus
        max_tokens beyond the context."""
        ids = self.prompt_token_ids
        if not ids:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if vocab_size is not None:
            bad = next((t for t in ids if not 0 <= t < vocab_size), None)
            if bad is not None:
                raise InvalidRequestError(
                    f"token id {bad} is outside the vocabulary [0, {vocab_size})", param="prompt")
        self.sampling.validate()
        total = len(ids) + self.sampling.max_tokens
        if total > context_length:
            raise ContextLengthError(
                f"prompt ({len(ids)} tokens) plus max_tokens ({self.sampling.max_tokens}) is "
                f"{total} tokens, over the context length of {context_length}; shorten the "
                "prompt or lower max_tokens", param="max_tokens")


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and, when asked, the most likely alternatives."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache


@dataclass(frozen=True)
class TokenDelta:
    """What one engine step produced for one request.

    `text` is the newly decodable text (never a broken UTF-8 character); the last delta of a
    request carries `finish_reason` and `usage`.
    """

    request_id: str
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None


@dataclass(frozen=True)
class EngineStats:
    """Load and cache state, as the router and the autoscaler need it. Built by
    `serve.engine.load_meter.LoadMeter.snapshot`, for live engines and modelled ones alike."""

    running: int
    waiting: int
    kv_pages_used: int
    kv_pages_total: int
    page_size: int
    queued_prefill_tokens: int
    # E[min(L, max_tokens) - generated | L > generated] summed over the requests, from the
    # engine's output-length distribution: the decode work its streams are expected to take.
    expected_remaining_decode_tokens: int
    prefix_cache_hit_tokens: int  # cumulative prompt tokens served from cache
    prompt_tokens: int  # cumulative prompt tokens seen
    generation_tokens_per_s: float
    cached_block_hashes: tuple[int, ...] = ()  # chain hashes of the page-sized blocks held
    ttft_p90_s: float | None = None  # recent time to first token, 90th percentile
    ttft_p99_s: float | None = None  # ... and 99th
    first_tokens_per_s: float = 0.0  # first tokens sent per second, recently
    # ... of which slower than each of `load_meter.TTFT_THRESHOLDS_S`, per second
    ttft_over_per_s: tuple[float, ...] = ()
    # ... and of those, the ones in time but for queueing before their prefill
    ttft_over_waiting_per_s: tuple[float, ...] = ()
    decode_bound_tokens: int = 0  # max_tokens - generated summed: the most still to decode
    longest_decode_bound_tokens: int = 0  # the largest of those: what a drain must wait for
    max_running: int = 0  # streams the engine decodes at once (0: not known)
    itl_mean_s: float | None = None  # recent inter-token latency, mean over tokens
    prefill_tokens_per_s: float = 0.0  # prompt tokens computed per second, recently
    prefill_capacity_tokens_per_s: float | None = None  # ... per second spent prefilling
    arrival_requests_per_s: float = 0.0  # requests arriving per second, recently
    arrival_prompt_tokens_per_s: float = 0.0  # their prompt tokens
    arrival_decode_tokens_per_s: float = 0.0  # their expected output tokens
    # ... and the KV token-steps they are expected to hold while decoding (times the seconds
    # per step: the KV a steady rate of such arrivals keeps in use, by Little's law)
    arrival_kv_token_steps_per_s: float = 0.0


class Engine(abc.ABC):
    """A model instance that streams tokens for many concurrent requests."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        """Stream the request's output. Raises `InvalidRequestError` before the first delta
        for input the engine cannot serve; ends with a delta that has `finish_reason` set."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a request now and free its KV pages; its stream ends with reason "abort"."""

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        """A snapshot of load and cache state; cheap, no remote calls."""

    @abc.abstractmethod
    async def health(self) -> None:
        """Return when the engine can serve; raise `EngineDeadError` when it cannot."""

    async def shutdown(self, reason: str = "the engine was shut down") -> None:  # noqa: B027
        """Release resources; in-flight requests end with an `EngineDeadError` saying
        `reason`."""
