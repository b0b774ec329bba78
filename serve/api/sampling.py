"""From an OpenAI request's fields to the engine's `SamplingParams`, and one
`GenerationRequest` per choice. Limits are checked here, before anything reaches an engine."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from serve.engine.base import GenerationRequest, SamplingParams
from serve.errors import ContextLengthError, InvalidRequestError

if TYPE_CHECKING:
    from serve.api.api_settings import ApiSettings
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
    room = context - prompt_len
    if room < 1:  # the prompt alone is too long, whatever the output budget
        raise ContextLengthError(
            f"the prompt ({prompt_len} tokens) leaves no room for output in the context "
            f"length of {context}; shorten the prompt", param=prompt_param)
    if requested is None:
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
                    n: int, first_index: int = 0, total: int | None = None,
                    session_id: str | None = None) -> list[GenerationRequest]:
    """One engine request per choice. Choice i gets seed `seed + i`, so n choices differ from
    each other yet the whole response repeats for the same seed.

    `total` is the response's number of choices (several prompts of a completion each bring
    `n`); a response of one choice keeps `request_id` as it is, the others get `choice_id`s."""
    total = first_index + n if total is None else total
    out = []
    for i in range(n):
        index = first_index + i
        seed = None if sampling.seed is None else sampling.seed + i
        rid = request_id if total == 1 else choice_id(request_id, index, total)
        out.append(GenerationRequest(rid, tuple(prompt_ids), replace(sampling, seed=seed),
                                     expected_output_tokens=None, session_id=session_id))
    return out


def choice_id(request_id: str, index: int, total: int) -> str:
    """The engine request id of choice `index` of `total`: `{id}-c001`.

    No two ids of one response are prefixes of each other: every index has the same number of
    digits. SGLang aborts every request whose id starts with the id it is given, so with
    `{id}-1` beside `{id}-10` an abort of the first would end the second as well."""
    width = max(3, len(str(total - 1)))
    return f"{request_id}-c{index:0{width}d}"
