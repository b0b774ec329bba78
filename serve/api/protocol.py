"""OpenAI Chat Completions and Completions requests, as pydantic models: the HTTP edge in.

Requests forbid unknown fields, so a typo is a 400 naming the field, and take JSON's types as
they are (strict: `"max_tokens": true`, `"stream": "yes"` or `"seed": "42"` are 400s, as at
OpenAI; NaN and infinities too). Text that is tokenized must be Unicode: a lone surrogate
escape (`"\\ud800"`) is a 400 naming its field. Known OpenAI fields this server cannot honour
(tools, response formats, penalties, ...) are accepted by the schema and then rejected by
`check_supported()` with a 400 naming the field whenever they are set to anything but their
no-op value; none is silently ignored. Extensions beyond OpenAI's schema
(`top_k`, `min_p`, `ignore_eos`, `reasoning_content`) follow vLLM's and DeepSeek's names.
What the server sends back is in `serve/api/responses.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from serve.api.request_fields import (
    EMPTY_LIST,
    NONE,
    Text,
    TokenId,
    json_int,
    no_empty_lists,
    no_op_only,
    rules,
    unless,
)
from serve.errors import InvalidRequestError

MAX_N = 128  # OpenAI's limit on choices per request; here on all prompts' choices together
MAX_TOP_LOGPROBS = 20
MAX_STOP = 16  # stop strings per request (OpenAI allows 4); each is matched at every token
MAX_STOP_CHARS = 1024  # characters per stop string
# Integers every JSON reader carries exactly (I-JSON, RFC 7493); choice i uses seed + i.
SEED_RANGE = {"ge": -(2**53 - 1), "le": 2**53 - 1}

StopText = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class UnsupportedParameterError(InvalidRequestError):
    """A known OpenAI parameter set to a value this server cannot honour (HTTP 400)."""

    code = "unsupported_parameter"


def _require(checks: Iterable[tuple[str, bool, str]]) -> None:
    for param, ok, why in checks:
        if not ok:
            raise UnsupportedParameterError(
                f"'{param}' is not supported by this server: {why}; remove it from the request",
                param=param)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# -- shared pieces ---------------------------------------------------------------------------


class StreamOptions(_Request):
    include_usage: bool | None = None
    include_obfuscation: bool | None = no_op_only({"const": False})


class ContentPart(BaseModel):
    """A part of a message's content. Only `text` parts are served; other types pass
    validation so that the error names the unsupported part, not its fields (the published
    schema lists only what is served)."""

    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        "required": ["type", "text"], "additionalProperties": False})
    type: str
    text: Text | None = None


class ToolCallFunction(_Request):
    name: Text
    arguments: Text


class ToolCall(_Request):
    id: str | None = None
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Request):
    """One message of the conversation. `developer` is treated as `system`. Only an assistant
    message may go without content, and only it carries tool calls (checked where the
    messages are rendered; the published schema says so)."""

    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"role": {"const": "assistant"}}},
        "then": {},
        "else": {"required": ["content"],
                 "properties": {"content": {"not": {"type": "null"}},
                                "tool_calls": {"type": "null"}}}})

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: str | None = no_op_only()  # R1's template has no participant names
    tool_calls: list[ToolCall] | None = None  # history of earlier assistant turns
    tool_call_id: str | None = None
    # DeepSeek returns it; clients echo it back. R1's template drops earlier reasoning anyway.
    reasoning_content: str | None = None


_STREAM_RULES = (unless("stream", {"stream_options": {"type": "null"}}),)


class _SamplingFields(_Request):
    """Fields both endpoints share."""

    model_config = ConfigDict(json_schema_extra=rules(*_STREAM_RULES))

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)] | None = None
    max_tokens: json_int(ge=1) | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: json_int(ge=0) | None = Field(default=None, description="extension: 0 disables")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="extension")
    seed: json_int(**SEED_RANGE) | None = None
    n: json_int(ge=1, le=MAX_N) = 1
    ignore_eos: bool = Field(default=False, description="extension: generate past EOS")
    user: str | None = None
    # Known OpenAI fields that only their no-op value can honour.
    logit_bias: dict[str, float] | None = no_op_only({"type": "object", "maxProperties": 0})
    presence_penalty: float | None = no_op_only({"const": 0})
    frequency_penalty: float | None = no_op_only({"const": 0})

    @field_validator("stream", "n", "ignore_eos", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any, info: ValidationInfo) -> Any:
        """OpenAI's schema lets these be null, meaning the default."""
        return cls.model_fields[info.field_name].default if value is None else value

    @property
    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def _common_checks(self) -> list[tuple[str, bool, str]]:
        opts = self.stream_options
        return [
            ("stream_options", opts is None or self.stream,
             "it is only allowed together with stream=true"),
            ("stream_options.include_obfuscation", not (opts and opts.include_obfuscation),
             "streams are not obfuscated"),
            ("logit_bias", not self.logit_bias, "logit biasing is not implemented"),
            ("presence_penalty", not self.presence_penalty, "penalties are not implemented"),
            ("frequency_penalty", not self.frequency_penalty, "penalties are not implemented"),
        ]


# -- chat completions ------------------------------------------------------------------------


class ChatCompletionRequest(_SamplingFields):
    """`POST /v1/chat/completions`."""

    model_config = ConfigDict(json_schema_extra=rules(
        *_STREAM_RULES,
        unless("logprobs", {"top_logprobs": {"enum": [None, 0]}}),
        {"not": {"required": ["max_tokens", "max_completion_tokens"],  # send one of them
                 "properties": {"max_tokens": {"type": "integer"},
                                "max_completion_tokens": {"type": "integer"}}}}))

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: json_int(ge=1) | None = None
    logprobs: bool = False
    top_logprobs: json_int(ge=0, le=MAX_TOP_LOGPROBS) | None = None
    # Inert labels: they do not change what is generated.
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # Known OpenAI fields that only their no-op value can honour.
    tools: list[dict[str, Any]] | None = no_op_only(EMPTY_LIST)
    tool_choice: str | dict[str, Any] | None = no_op_only(NONE)
    parallel_tool_calls: bool | None = no_op_only()
    functions: list[dict[str, Any]] | None = no_op_only(EMPTY_LIST)
    function_call: str | dict[str, Any] | None = no_op_only(NONE)
    response_format: dict[str, Any] | None = no_op_only({
        "type": "object", "properties": {"type": {"const": "text"}}, "required": ["type"],
        "additionalProperties": False})
    reasoning_effort: str | None = no_op_only()
    verbosity: str | None = no_op_only()
    modalities: list[str] | None = no_op_only(
        {"type": "array", "items": {"const": "text"}, "minItems": 1, "maxItems": 1})
    audio: dict[str, Any] | None = no_op_only()
    prediction: dict[str, Any] | None = no_op_only()
    web_search_options: dict[str, Any] | None = no_op_only()
    store: bool | None = no_op_only({"const": False})
    service_tier: str | None = no_op_only({"enum": ["auto", "default"]})

    @field_validator("logprobs", mode="before")
    @classmethod
    def _null_logprobs(cls, value: Any) -> Any:
        return False if value is None else value

    def check_supported(self) -> None:
        """Raise `UnsupportedParameterError` naming the first field this server cannot honour."""
        fmt = self.response_format
        _require([
            *self._common_checks(),
            ("tools", not self.tools, "tool calling is not implemented"),
            ("tool_choice", self.tool_choice in (None, "none"), "tool calling is not implemented"),
            ("parallel_tool_calls", self.parallel_tool_calls is None,
             "tool calling is not implemented"),
            ("functions", not self.functions, "function calling is not implemented"),
            ("function_call", self.function_call in (None, "none"),
             "function calling is not implemented"),
            ("response_format", fmt is None or fmt == {"type": "text"},
             "only {'type': 'text'} is served; structured output is not implemented"),
            ("reasoning_effort", self.reasoning_effort is None,
             "R1 always reasons; its effort cannot be set"),
            ("verbosity", self.verbosity is None, "verbosity cannot be set"),
            ("modalities", self.modalities in (None, ["text"]), "only text output is served"),
            ("audio", self.audio is None, "only text output is served"),
            ("prediction", self.prediction is None, "predicted outputs are not implemented"),
            ("web_search_options", self.web_search_options is None, "there is no web search"),
            ("store", not self.store, "completions are not stored"),
            ("service_tier", self.service_tier in (None, "auto", "default"),
             "there is one service tier"),
            ("top_logprobs", not self.top_logprobs or self.logprobs,
             "top_logprobs needs logprobs=true"),
            ("max_completion_tokens", self.max_tokens is None
             or self.max_completion_tokens in (None, self.max_tokens),
             "max_tokens and max_completion_tokens disagree; send one of them"),
        ])
        for i, m in enumerate(self.messages):
            _require([(f"messages[{i}].name", m.name is None,
                       "R1's chat template has no participant names")])
            for j, part in enumerate(m.content if isinstance(m.content, list) else ()):
                _require([(f"messages[{i}].content[{j}]", part.type == "text",
                           f"only text parts are served, not {part.type!r}")])
                if part.text is None:
                    raise InvalidRequestError(
                        f"missing required parameter 'messages[{i}].content[{j}].text': a "
                        "text part carries its text", param=f"messages[{i}].content[{j}].text")

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# -- completions -----------------------------------------------------------------------------


class CompletionRequest(_SamplingFields):
    """`POST /v1/completions`: a raw prompt, no chat template, no reasoning split."""

    prompt: Text | list[Text] | list[TokenId] | list[list[TokenId]] = Field(
        json_schema_extra=lambda schema: no_empty_lists(schema))
    logprobs: json_int(ge=0, le=MAX_TOP_LOGPROBS) | None = None
    echo: bool | None = no_op_only({"const": False}, default=False)
    suffix: str | None = no_op_only({"const": ""})
    best_of: json_int(ge=1) | None = no_op_only()  # served only as n

    def check_supported(self) -> None:
        """Raise `UnsupportedParameterError` naming the first field this server cannot honour."""
        _require([
            *self._common_checks(),
            ("echo", not self.echo, "the prompt is not echoed"),
            ("suffix", not self.suffix, "insertion (suffix) is not implemented"),
            ("best_of", self.best_of in (None, self.n),
             "ranking candidates is not implemented; use n"),
        ])

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value: Any) -> Any:
        if value == []:
            raise ValueError("no prompt: send a string, a list of token ids, or a list of them")
        return value

    @property
    def prompts(self) -> list[str | list[int]]:
        """The batch of prompts: one string or token-id list each."""
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]
