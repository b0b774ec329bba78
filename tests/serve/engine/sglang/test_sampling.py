"""Our SamplingParams mapped to SGLang's sampling parameters."""

from __future__ import annotations

import pytest

from serve.engine.base import SamplingParams
from serve.engine.sglang.sampling import to_sglang
from serve.errors import InvalidRequestError


def test_full_mapping() -> None:
    opts = to_sglang(SamplingParams(max_tokens=100, temperature=0.6, top_p=0.95, top_k=0,
                                    min_p=0.05, stop=("</s>",), stop_token_ids=(1, 2),
                                    ignore_eos=True, logprobs=True, top_logprobs=5),
                     deterministic=False)
    assert opts.sampling_params == {
        "max_new_tokens": 100, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "min_p": 0.05,
        "ignore_eos": True, "skip_special_tokens": True, "stop": ["</s>"],
        "stop_token_ids": [1, 2]}
    assert opts.generate_kwargs() == {"sampling_params": opts.sampling_params,
                                      "return_logprob": True, "top_logprobs_num": 5}


def test_top_k_and_greedy() -> None:
    p = to_sglang(SamplingParams(top_k=40, temperature=0.0), deterministic=False)
    assert p.sampling_params["top_k"] == 40 and p.sampling_params["temperature"] == 0.0
    assert "return_logprob" not in p.generate_kwargs()


def test_seed_needs_deterministic_mode() -> None:
    with pytest.raises(InvalidRequestError, match="enable_deterministic_inference") as e:
        to_sglang(SamplingParams(seed=7), deterministic=False)
    assert e.value.param == "seed"
    assert to_sglang(SamplingParams(seed=7), deterministic=True).sampling_params[
        "sampling_seed"] == 7


def test_out_of_range_is_rejected_before_sending() -> None:
    with pytest.raises(InvalidRequestError, match="top_p"):
        to_sglang(SamplingParams(top_p=0.0), deterministic=False)


def test_top_logprobs_without_logprobs_is_ignored() -> None:
    assert to_sglang(SamplingParams(top_logprobs=3), deterministic=False).return_logprob is False
