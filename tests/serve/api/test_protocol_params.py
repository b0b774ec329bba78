"""Request parsing and parameter mapping, without a server: what is accepted, what is refused
(and named), and how OpenAI fields become the engine's sampling parameters."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError

from serve.api.api_settings import ApiSettings
from serve.api.auth import ApiKeyAuth, AuthenticationError
from serve.api.chat import template_messages
from serve.api.http_errors import describe_validation_error
from serve.api.logprobs import LogprobFormatter
from serve.api.protocol import (
    MAX_STOP,
    ChatCompletionRequest,
    CompletionRequest,
    UnsupportedParameterError,
)
from serve.api.sampling import choice_requests, resolve_max_tokens, sampling_params
from serve.api.sse import DONE, sse_event
from serve.engine.base import TokenLogprob
from serve.errors import ConfigError, ContextLengthError, InvalidRequestError

SETTINGS = ApiSettings(served_model_name="m", context_length=100, max_tokens_cap=40)
USER = [{"role": "user", "content": "hi"}]


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})


def param_of(exc: ValidationError) -> str | None:
    return describe_validation_error(exc.errors())[2]


def test_unknown_fields_are_refused_by_name():
    with pytest.raises(ValidationError) as e:
        chat(temprature=0.5)
    message, code, param = describe_validation_error(e.value.errors())
    assert (code, param) == ("unknown_parameter", "temprature")
    assert "temprature" in message
    with pytest.raises(ValidationError) as e:
        chat(messages=[{"role": "user", "content": "hi", "nmae": "x"}])
    assert param_of(e.value) == "messages[0].nmae"


@pytest.mark.parametrize("fields, param", [
    ({"temperature": 3.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"stop": 5}, "stop"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": []}, "messages"),
])
def test_invalid_values_name_the_field(fields, param):
    with pytest.raises(ValidationError) as e:
        chat(**fields)
    assert param_of(e.value) == param


@pytest.mark.parametrize("fields, param", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logit_bias": {"42": 5}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -1.0}, "frequency_penalty"),
    ({"reasoning_effort": "low"}, "reasoning_effort"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"store": True}, "store"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}, "messages[0].name"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "messages[0].content[0]"),
])
def test_unhonourable_values_are_refused_by_name(fields, param):
    with pytest.raises(UnsupportedParameterError) as e:
        chat(**fields).check_supported()
    assert e.value.param == param and e.value.status_code == 400
    assert param in e.value.message


@pytest.mark.parametrize("fields", [
    {"tool_choice": "none", "tools": []},
    {"response_format": {"type": "text"}},
    {"logit_bias": {}},
    {"presence_penalty": 0, "frequency_penalty": 0.0},
    {"modalities": ["text"]},
    {"store": False, "service_tier": "auto"},
    {"stream": True, "stream_options": {"include_usage": True}},
    {"user": "u", "metadata": {"k": "v"}, "seed": 3},
    {"max_tokens": 5, "max_completion_tokens": 5},
    {"stream": None, "n": None, "logprobs": None, "top_logprobs": None, "stop": None},
    {"messages": [{"role": "assistant", "content": "x", "reasoning_content": "old"}]},
])
def test_no_op_values_are_accepted(fields):
    chat(**fields).check_supported()


def test_completions_refusals():
    def completion(**fields):
        return CompletionRequest.model_validate({"model": "m", "prompt": "x", **fields})

    for fields, param in [({"echo": True}, "echo"), ({"suffix": "s"}, "suffix"),
                          ({"best_of": 3}, "best_of"), ({"logit_bias": {"1": 1}}, "logit_bias")]:
        with pytest.raises(UnsupportedParameterError) as e:
            completion(**fields).check_supported()
        assert e.value.param == param
    completion(best_of=2, n=2).check_supported()
    assert completion(prompt=[1, 2]).prompts == [[1, 2]]
    assert completion(prompt=["a", "b"]).prompts == ["a", "b"]
    assert completion(prompt=[[1], [2, 3]]).prompts == [[1], [2, 3]]


def test_max_tokens_defaults_to_the_cap_within_the_context():
    assert resolve_max_tokens(None, 10, SETTINGS) == 40
    assert resolve_max_tokens(None, 90, SETTINGS) == 10  # only 10 tokens of room left
    assert resolve_max_tokens(7, 10, SETTINGS) == 7
    with pytest.raises(InvalidRequestError) as e:
        resolve_max_tokens(41, 10, SETTINGS)
    assert "40" in e.value.message and e.value.param == "max_tokens"
    with pytest.raises(ContextLengthError) as e:
        resolve_max_tokens(30, 80, SETTINGS)
    assert all(s in e.value.message for s in ("80", "30", "110", "100"))
    with pytest.raises(ContextLengthError):
        resolve_max_tokens(None, 100, SETTINGS)


def test_sampling_defaults_follow_the_r1_model_card():
    p = sampling_params(chat(), 16, SETTINGS)
    assert (p.temperature, p.top_p, p.max_tokens) == (0.6, 0.95, 16)
    p = sampling_params(chat(temperature=0, top_p=0.5, top_k=3, min_p=0.1, stop="x",
                             ignore_eos=True), 8, SETTINGS)
    assert (p.temperature, p.top_p, p.top_k, p.min_p, p.stop, p.ignore_eos) == (
        0.0, 0.5, 3, 0.1, ("x",), True)
    with pytest.raises(ValidationError) as e:  # an empty stop string is refused at the edge
        chat(stop=["ok", ""])
    assert any(err["loc"][0] == "stop" for err in e.value.errors())


def test_each_choice_gets_its_own_id_and_seed():
    p = sampling_params(chat(seed=10), 8, SETTINGS)
    reqs = choice_requests("chatcmpl-x", [1, 2], p, 3)
    assert [r.request_id for r in reqs] == ["chatcmpl-x-c000", "chatcmpl-x-c001",
                                            "chatcmpl-x-c002"]
    assert [r.sampling.seed for r in reqs] == [10, 11, 12]
    assert choice_requests("chatcmpl-y", [1], sampling_params(chat(), 8, SETTINGS), 1)[
        0].request_id == "chatcmpl-y"


@pytest.mark.parametrize(("n", "prompts"), [(20, 1), (128, 1), (1, 2), (128, 100)])
def test_no_choice_id_is_a_prefix_of_another(n, prompts):
    """SGLang aborts every request whose id starts with the one given (its scheduler's
    `req.rid.startswith(recv_req.rid)`): aborting one choice must end no other."""
    p = sampling_params(chat(), 8, SETTINGS)
    ids = [r.request_id for k in range(prompts)
           for r in choice_requests("cmpl-z", [1], p, n, first_index=k * n, total=prompts * n)]
    assert len(set(ids)) == n * prompts
    ids.sort()  # a prefix of some id sorts right before an id it begins
    assert not any(b.startswith(a) for a, b in itertools.pairwise(ids))


def test_messages_become_what_the_template_reads():
    req = chat(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                      "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"},
    ])
    req.check_supported()
    assert template_messages(req.messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42"},
    ]
    with pytest.raises(InvalidRequestError) as e:
        template_messages(chat(messages=[{"role": "user"}]).messages)
    assert e.value.param == "messages[0].content"


def test_sse_framing():
    assert sse_event('{"a": 1}') == b'data: {"a": 1}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_api_keys():
    ApiKeyAuth(frozenset()).check(None)  # no keys configured: open
    auth = ApiKeyAuth(frozenset({"k1", "k2"}))
    auth.check("Bearer k2")
    auth.check("bearer k1")
    for header in (None, "", "Bearer", "Bearer k3", "k1", "Basic k1", "Bearer k1x"):
        with pytest.raises(AuthenticationError) as e:
            auth.check(header)
        assert e.value.status_code == 401


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="max_in_flight"):
        ApiSettings("m", 100, 10, max_in_flight=0)
    with pytest.raises(ConfigError, match="default_top_p"):
        ApiSettings("m", 100, 10, default_top_p=0.0)


def test_logprob_tokens_carry_their_exact_bytes(tiny_tokenizer):
    fmt = LogprobFormatter(tiny_tokenizer)
    word = tiny_tokenizer.encode(" café", add_bos=False)
    pieces = [fmt.token(i) for i in word]
    assert b"".join(bytes(b) for _, b in pieces).decode() == " café"
    think = tiny_tokenizer.think_end_id
    assert fmt.token(think) == ("</think>", list(b"</think>"))
    eos = fmt.token(tiny_tokenizer.eos_token_id)
    assert eos[0] == tiny_tokenizer.eos_token and bytes(eos[1]).decode() == eos[0]
    lp = TokenLogprob(word[0], -0.5, ((word[0], -0.5), (think, -1.0)))
    [entry] = fmt.chat([lp], top_n=1)
    assert entry.logprob == -0.5 and len(entry.top_logprobs) == 1
    legacy = fmt.completion([lp, lp], top_n=2, text_offset=3)
    assert legacy.text_offset[0] == 3 and legacy.top_logprobs[0]["</think>"] == -1.0


@pytest.mark.parametrize("fields, param", [
    ({"max_tokens": True}, "max_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"seed": "42"}, "seed"),
    ({"logprobs": "yes"}, "logprobs"),
    ({"temperature": "0.5"}, "temperature"),
    ({"n": 2.5}, "n"),  # 2.0 is the integer 2, as JSON has it
    ({"stream_options": {"include_usage": 1}, "stream": True}, "stream_options.include_usage"),
])
def test_json_types_are_taken_strictly(fields, param):
    with pytest.raises(ValidationError) as e:
        chat(**fields)
    assert param_of(e.value) == param


def test_nan_is_not_a_number_here():
    with pytest.raises(ValidationError) as e:
        chat(temperature=float("nan"))
    message, _, param = describe_validation_error(e.value.errors())
    assert param == "temperature" and "finite" in message and "less than" not in message


@pytest.mark.parametrize("request_fields, param", [
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
     "messages[0].content[0].text"),
    ({"stop": ["ok", "x\ud800"]}, "stop[1]"),
    ({"prompt": "a\ud800b"}, "prompt"),
    ({"prompt": ["a", "\ud800"]}, "prompt[1]"),
])
def test_lone_surrogates_are_refused_by_field(request_fields, param):
    model = CompletionRequest if "prompt" in request_fields else ChatCompletionRequest
    body = {"model": "m", **({} if "prompt" in request_fields else {"messages": USER}),
            **request_fields}
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    message, code, got = describe_validation_error(e.value.errors())
    assert got == param and "surrogate" in message and code == "invalid_value"
    # JSON's escaped pair is one character, like any other
    chat(messages=[{"role": "user", "content": json.loads('"a\\ud83d\\ude00b"')}])


def test_edge_cases_of_lists():
    with pytest.raises(ValidationError) as e:
        CompletionRequest.model_validate({"model": "m", "prompt": []})
    message, _, param = describe_validation_error(e.value.errors())
    assert param == "prompt" and "no prompt" in message
    chat(stop=["s"] * MAX_STOP)
    with pytest.raises(ValidationError) as e:
        chat(stop=["s"] * (MAX_STOP + 1))
    message, _, param = describe_validation_error(e.value.errors())
    assert param == "stop" and str(MAX_STOP) in message


def test_a_text_part_without_text_is_named():
    with pytest.raises(InvalidRequestError) as e:
        chat(messages=[{"role": "user", "content": [{"type": "text"}]}]).check_supported()
    assert e.value.param == "messages[0].content[0].text"
    assert "only text parts" not in e.value.message


def test_a_prompt_too_long_alone_names_the_prompt_not_max_tokens():
    with pytest.raises(ContextLengthError) as e:
        resolve_max_tokens(5, 100, SETTINGS, prompt_param="prompt")
    assert e.value.param == "prompt"
    with pytest.raises(ContextLengthError) as e:
        resolve_max_tokens(30, 80, SETTINGS)  # the prompt fits; the output does not
    assert e.value.param == "max_tokens"
