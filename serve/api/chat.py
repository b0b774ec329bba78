"""`/v1/chat/completions`: messages through R1's chat template in; `reasoning_content` and
`content` out, split as DeepSeek's API splits them (see `reasoning.py`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from serve.api.logprobs import LogprobFormatter
from serve.api.prompt_tokens import prompt_tokens
from serve.api.protocol import ChatCompletionRequest, ChatMessage
from serve.api.reasoning import ReasoningDelta, ReasoningSplitter
from serve.api.responses import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    ChatResponseMessage,
    UsageInfo,
)
from serve.api.sampling import choice_requests, resolve_max_tokens, sampling_params
from serve.api.tokenizer_protocol import ApiTokenizer
from serve.api.usage import ChoiceUsage, total_usage
from serve.engine.base import GenerationRequest, TokenDelta, TokenLogprob
from serve.errors import InvalidRequestError

if TYPE_CHECKING:
    from serve.api.api_settings import ApiSettings


def plan_chat(body: ChatCompletionRequest, tokenizer: ApiTokenizer, settings: ApiSettings,
              session_id: str | None = None) -> tuple[list[GenerationRequest], ChatRenderer]:
    """Validate and tokenize a chat request: its engine requests and their renderer."""
    body.check_supported()
    text = tokenizer.render_chat(template_messages(body.messages), add_generation_prompt=True)
    # the template writes the BOS
    prompt = prompt_tokens(tokenizer, text, settings.context_length, "messages", add_bos=False)
    param = "max_tokens" if body.max_completion_tokens is None else "max_completion_tokens"
    max_tokens = resolve_max_tokens(body.requested_max_tokens, len(prompt), settings, param)
    top = body.top_logprobs or 0
    sampling = sampling_params(body, max_tokens, settings, logprobs=body.logprobs,
                               top_logprobs=top)
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    requests = choice_requests(response_id, prompt, sampling, body.n, session_id=session_id)
    renderer = ChatRenderer(response_id, settings.served_model_name, len(prompt), body.n,
                            tokenizer, stream=body.stream, include_usage=body.include_usage,
                            top_logprobs=top if body.logprobs else None)
    return requests, renderer


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages as R1's chat template reads them: string contents (text parts joined by
    newlines), `developer` as `system`, assistant tool calls kept as history."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        text = (m.content if isinstance(m.content, str) or m.content is None
                else "\n".join(p.text or "" for p in m.content))
        if m.tool_calls and m.role != "assistant":
            raise InvalidRequestError(f"only assistant messages carry tool_calls, not {m.role}",
                                      param=f"messages[{i}].tool_calls")
        if m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": text, "tool_calls": [
                {"type": c.type, "function": {"name": c.function.name,
                                              "arguments": c.function.arguments}}
                for c in m.tool_calls]})
            continue
        if text is None and m.role != "assistant":
            raise InvalidRequestError(f"a {m.role} message needs content",
                                      param=f"messages[{i}].content")
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": text or ""})
    return out


@dataclass
class _Choice:
    splitter: ReasoningSplitter
    usage: ChoiceUsage
    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    started: bool = False  # the role chunk went out


class ChatRenderer:
    """Chat completion objects for one request's choices, streamed or whole."""

    def __init__(self, response_id: str, model: str, prompt_tokens: int, n: int,
                 tokenizer: ApiTokenizer, *, stream: bool, include_usage: bool,
                 top_logprobs: int | None) -> None:
        self._id, self._model, self._n = response_id, model, n
        self._created = int(time.time())
        self._stream, self._include_usage = stream, include_usage
        self._top = top_logprobs  # None: no logprobs
        self._fmt = LogprobFormatter(tokenizer)
        self._choices = [_Choice(ReasoningSplitter(tokenizer.think_end_id),
                                 ChoiceUsage(prompt_tokens)) for _ in range(n)]

    def push(self, index: int, delta: TokenDelta) -> list[BaseModel]:
        c = self._choices[index]
        part = c.splitter.push(delta.text, delta.token_ids)
        if delta.finish_reason is not None:
            tail = c.splitter.flush()
            part = ReasoningDelta(part.reasoning + tail.reasoning, part.content + tail.content)
            c.finish_reason = delta.finish_reason
            seen = c.splitter.completion_tokens
            completion = delta.usage.completion_tokens if delta.usage else seen
            c.usage.record(delta.usage, seen, completion - c.splitter.answer_tokens)
        lps = (delta.logprobs or ()) if self._top is not None else ()
        if not self._stream:
            c.reasoning.append(part.reasoning)
            c.content.append(part.content)
            c.logprobs.extend(lps)
            return []
        logprobs = ChatLogprobs(content=self._fmt.chat(lps, self._top or 0)) if lps else None
        role = None if c.started else "assistant"
        c.started = True
        chunks = []
        # Reasoning and answer go in separate chunks, as DeepSeek streams them.
        if part.reasoning:
            chunks.append(self._chunk(
                index, ChatDelta(role=role, reasoning_content=part.reasoning), logprobs))
            role, logprobs = None, None
        if part.content:
            chunks.append(self._chunk(index, ChatDelta(role=role, content=part.content),
                                      logprobs))
            role, logprobs = None, None
        if role or logprobs or delta.finish_reason is not None:
            chunks.append(self._chunk(index, ChatDelta(role=role), logprobs,
                                      delta.finish_reason))
        return chunks

    def final_chunks(self) -> list[BaseModel]:
        if not self._include_usage:
            return []
        return [ChatCompletionChunk(id=self._id, created=self._created, model=self._model,
                                    choices=[], usage=self.usage())]

    def response(self) -> ChatCompletionResponse:
        choices = []
        for i, c in enumerate(self._choices):
            message = ChatResponseMessage(
                content="".join(c.content) if c.splitter.answer_started else None,
                reasoning_content="".join(c.reasoning))
            logprobs = (None if self._top is None
                        else ChatLogprobs(content=self._fmt.chat(c.logprobs, self._top)))
            choices.append(ChatChoice(index=i, message=message, logprobs=logprobs,
                                      finish_reason=c.finish_reason))
        return ChatCompletionResponse(id=self._id, created=self._created, model=self._model,
                                      choices=choices, usage=self.usage())

    def usage(self) -> UsageInfo:
        return total_usage([c.usage for c in self._choices], self._n, with_reasoning=True)

    def _chunk(self, index: int, delta: ChatDelta, logprobs: ChatLogprobs | None,
               finish_reason: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id, created=self._created, model=self._model,
            choices=[ChatChunkChoice(index=index, delta=delta, logprobs=logprobs,
                                     finish_reason=finish_reason)])
