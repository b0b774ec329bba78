"""Our `SamplingParams` as the arguments of SGLang's `async_generate`.

Field names follow SGLang 0.5.23's `SamplingParams` (sglang/srt/sampling/sampling_params.py).
What SGLang cannot honour is rejected before the request is sent, with the knob to turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve.engine.base import SamplingParams
from serve.errors import InvalidRequestError


@dataclass(frozen=True)
class SGLangRequestOptions:
    """Everything of one request but the token ids, as `async_generate` keywords."""

    sampling_params: dict[str, Any]
    return_logprob: bool = False
    top_logprobs_num: int = 0

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"sampling_params": self.sampling_params}
        if self.return_logprob:
            kwargs.update(return_logprob=True, top_logprobs_num=self.top_logprobs_num)
        return kwargs


def to_sglang(sp: SamplingParams, *, deterministic: bool) -> SGLangRequestOptions:
    """Map and check one request's sampling parameters.

    `deterministic`: the engine runs with `enable_deterministic_inference`, the only mode in
    which SGLang 0.5.23 applies a per-request `sampling_seed` (otherwise it silently ignores
    it, so a seeded request would not be reproducible).
    """
    sp.validate()
    params: dict[str, Any] = {
        "max_new_tokens": sp.max_tokens,
        "temperature": sp.temperature,  # 0 -> SGLang samples greedily (top_k = 1)
        "top_p": sp.top_p,
        "top_k": sp.top_k if sp.top_k > 0 else -1,  # SGLang's "off" is -1, ours is 0
        "min_p": sp.min_p,
        "ignore_eos": sp.ignore_eos,
        "skip_special_tokens": sp.skip_special_tokens,
    }
    if sp.stop:
        params["stop"] = list(sp.stop)
    if sp.stop_token_ids:
        params["stop_token_ids"] = list(sp.stop_token_ids)
    if sp.seed is not None:
        if not deterministic:
            raise InvalidRequestError(
                "seed is only honoured when the SGLang engine runs in deterministic mode; "
                "set engine.backend_args.enable_deterministic_inference: true, or send no "
                "seed", param="seed")
        if not -(2**63) <= sp.seed < 2**63:
            raise InvalidRequestError(f"seed={sp.seed} must fit in a signed 64-bit integer",
                                      param="seed")
        params["sampling_seed"] = sp.seed
    # top_logprobs without logprobs is ignored, as the reference engine does.
    return SGLangRequestOptions(params, return_logprob=sp.logprobs,
                                top_logprobs_num=sp.top_logprobs if sp.logprobs else 0)
