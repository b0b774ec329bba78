"""`/v1/completions`: a raw prompt (text or token ids, or a batch of them) in, text out;
no chat template and no reasoning split."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel

from serve.api.logprobs import LogprobFormatter
from serve.api.prompt_tokens import prompt_tokens
from serve.api.protocol import MAX_N, CompletionRequest
from serve.api.responses import CompletionChoice, CompletionChunk, CompletionResponse, UsageInfo
from serve.api.sampling import choice_requests, resolve_max_tokens, sampling_params
from serve.api.tokenizer_protocol import ApiTokenizer
from serve.api.usage import ChoiceUsage, total_usage
from serve.engine.base import GenerationRequest, TokenDelta, TokenLogprob
from serve.errors import InvalidRequestError

if TYPE_CHECKING:
    from serve.api.api_settings import ApiSettings


class TooManyChoicesError(InvalidRequestError):
    """The prompts times `n` are more choices than one request may ask for (HTTP 400)."""

    code = "too_many_choices"


def plan_completion(body: CompletionRequest, tokenizer: ApiTokenizer, settings: ApiSettings,
                    session_id: str | None = None,
                    ) -> tuple[list[GenerationRequest], CompletionRenderer]:
    """Validate and tokenize a completions request: `n` engine requests per prompt (choice
    `p * n + j` is prompt p's j-th), and their renderer."""
    body.check_supported()
    response_id = f"cmpl-{uuid.uuid4().hex}"
    prompts = body.prompts
    if len(prompts) * body.n > MAX_N:
        raise TooManyChoicesError(
            f"{len(prompts)} prompts of n={body.n} choices each are {len(prompts) * body.n} "
            f"choices, over this server's limit of {MAX_N} per request; send fewer prompts per "
            "request", param="prompt")
    top = body.logprobs or 0
    requests: list[GenerationRequest] = []
    prompt_lens: list[int] = []
    for p, prompt in enumerate(prompts):
        param = "prompt" if len(prompts) == 1 else f"prompt[{p}]"
        ids = (prompt_tokens(tokenizer, prompt, settings.context_length, param)
               if isinstance(prompt, str) else list(prompt))
        bad = next((t for t in ids if not 0 <= t < tokenizer.vocab_size), None)
        if bad is not None:
            raise InvalidRequestError(f"token id {bad} is outside the vocabulary "
                                      f"[0, {tokenizer.vocab_size})", param=param)
        if not ids:
            raise InvalidRequestError("the prompt is empty", param=param)
        max_tokens = resolve_max_tokens(body.max_tokens, len(ids), settings,
                                        prompt_param=param)
        sampling = sampling_params(body, max_tokens, settings,
                                   logprobs=body.logprobs is not None, top_logprobs=top)
        first = p * body.n
        requests += choice_requests(response_id, ids, sampling, body.n, first_index=first,
                                    total=len(prompts) * body.n, session_id=session_id)
        prompt_lens += [len(ids)] * body.n
    renderer = CompletionRenderer(response_id, settings.served_model_name, prompt_lens, body.n,
                                  tokenizer, stream=body.stream,
                                  include_usage=body.include_usage,
                                  top_logprobs=None if body.logprobs is None else top)
    return requests, renderer


@dataclass
class _Choice:
    usage: ChoiceUsage
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    chars: int = 0  # text emitted so far, for logprobs' text offsets
    tokens: int = 0
    finish_reason: str | None = None


class CompletionRenderer:
    """Text completion objects for one request's choices, streamed or whole."""

    def __init__(self, response_id: str, model: str, prompt_lens: list[int], n: int,
                 tokenizer: ApiTokenizer, *, stream: bool, include_usage: bool,
                 top_logprobs: int | None) -> None:
        self._id, self._model, self._n = response_id, model, n
        self._created = int(time.time())
        self._stream, self._include_usage = stream, include_usage
        self._top = top_logprobs  # None: no logprobs
        self._fmt = LogprobFormatter(tokenizer)
        self._choices = [_Choice(ChoiceUsage(length)) for length in prompt_lens]

    def push(self, index: int, delta: TokenDelta) -> list[BaseModel]:
        c = self._choices[index]
        c.tokens += len(delta.token_ids)
        if delta.finish_reason is not None:
            c.finish_reason = delta.finish_reason
            c.usage.record(delta.usage, c.tokens)
        lps = (delta.logprobs or ()) if self._top is not None else ()
        offset = c.chars
        c.chars += len(delta.text)
        if not self._stream:
            c.text.append(delta.text)
            c.logprobs.extend(lps)
            return []
        if not (delta.text or lps or delta.finish_reason is not None):
            return []
        logprobs = self._fmt.completion(lps, self._top or 0, offset) if lps else None
        choice = CompletionChoice(index=index, text=delta.text, logprobs=logprobs,
                                  finish_reason=delta.finish_reason)
        return [CompletionChunk(id=self._id, created=self._created, model=self._model,
                                choices=[choice])]

    def final_chunks(self) -> list[BaseModel]:
        if not self._include_usage:
            return []
        return [CompletionChunk(id=self._id, created=self._created, model=self._model,
                                choices=[], usage=self.usage())]

    def response(self) -> CompletionResponse:
        choices = [
            CompletionChoice(
                index=i, text="".join(c.text), finish_reason=c.finish_reason,
                logprobs=None if self._top is None
                else self._fmt.completion(c.logprobs, self._top, 0))
            for i, c in enumerate(self._choices)]
        return CompletionResponse(id=self._id, created=self._created, model=self._model,
                                  choices=choices, usage=self.usage())

    def usage(self) -> UsageInfo:
        return total_usage([c.usage for c in self._choices], self._n, with_reasoning=False)
