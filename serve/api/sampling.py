"""From an OpenAI request's fields to the engine's `SamplingParams`, and one
`GenerationRequest` per choice. Limits are checked here, before anything reaches an engine."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from serve.engine.base import GenerationRequest, SamplingParams
from serve.errors import ContextLengthError, InvalidRequestError

if TYPE_CHECKING:
    from serve.api.ingress import ApiSettings
    from serve.api.protocol import _SamplingFields


def resolve_max_tokens(requested: int | None, prompt_len: int, settings: ApiSettings,
                       param: str = "max_tokens", prompt_param: str = "messages") -> int:
    """The output budget: what the client asked for, else the cap trimmed to the room the
    prompt leaves in the context.

    Raises `InvalidRequestError` above the cap and `ContextLengthError` when prompt plus
    output would not fit; both messages name the numbers involved.
    """
    cap, context = settings.max_tokens_cap, settings.context_length
    if requested is not None and requested > cap:
        raise InvalidRequestError(
            f"{param}={requested} is over this server's limit of {cap} output tokens; ask for "
            f"at most {cap}", param=param)
    if requested is None:
        room = context - prompt_len
        if room < 1:
            raise ContextLengthError(
                f"the prompt ({prompt_len} tokens) leaves no room for output in the context "
                f"length of {context}; shorten the prompt", param=prompt_param)
        return min(cap, room)
    if prompt_len + requested > context:
        raise ContextLengthError(
            f"prompt ({prompt_len} tokens) plus {param} ({requested}) is "
            f"{prompt_len + requested} tokens, over the context length of {context}; shorten "
            f"the prompt or lower {param}", param=param)
    return requested


def sampling_params(body: _SamplingFields, max_tokens: int, settings: ApiSettings,
                    logprobs: bool = False, top_logprobs: int = 0) -> SamplingParams:
    """The engine's parameters for the first choice; R1's recommended temperature and top-p
    fill in what the client leaves out."""
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=settings.default_temperature if body.temperature is None
        else body.temperature,
        top_p=settings.default_top_p if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        seed=body.seed,
        stop=body.stop_list,
        ignore_eos=body.ignore_eos,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    params.validate()
    return params


def choice_requests(request_id: str, prompt_ids: list[int], sampling: SamplingParams,
                    n: int, first_index: int = 0,
                    session_id: str | None = None) -> list[GenerationRequest]:
    """One engine request per choice. Choice i gets seed `seed + i`, so n choices differ from
    each other yet the whole response repeats for the same seed."""
    out = []
    for i in range(n):
        index = first_index + i
        seed = None if sampling.seed is None else sampling.seed + i
        rid = request_id if n == 1 and first_index == 0 else f"{request_id}-{index}"
        out.append(GenerationRequest(rid, tuple(prompt_ids), replace(sampling, seed=seed),
                                     expected_output_tokens=None, session_id=session_id))
    return out
