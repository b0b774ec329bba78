"""Token usage: per choice from the engine's final delta, summed into OpenAI's `usage`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from serve.api.responses import CompletionTokensDetails, PromptTokensDetails, UsageInfo
from serve.engine.base import Usage


@dataclass
class ChoiceUsage:
    """What one choice consumed. Starts from the prompt length so that a choice the engine
    never reported on (it was aborted) still counts its prompt."""

    prompt_tokens: int
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def record(self, usage: Usage | None, tokens_seen: int, reasoning_tokens: int = 0) -> None:
        """Take the engine's counts from the final delta (or, if it sent none, the tokens the
        ingress saw), and the reasoning split's."""
        if usage is None:
            self.completion_tokens = tokens_seen
        else:
            self.prompt_tokens = usage.prompt_tokens
            self.cached_tokens = usage.cached_tokens
            self.completion_tokens = usage.completion_tokens
        self.reasoning_tokens = min(reasoning_tokens, self.completion_tokens)


def total_usage(choices: Sequence[ChoiceUsage], per_prompt: int,
                with_reasoning: bool) -> UsageInfo:
    """OpenAI's usage for a response: completion tokens summed over choices; a prompt counted
    once per group of `per_prompt` choices sharing it (as OpenAI bills `n`), its cached part
    being the least any of those choices found in the cache."""
    groups = [choices[i:i + per_prompt] for i in range(0, len(choices), per_prompt)]
    prompt = sum(g[0].prompt_tokens for g in groups)
    cached = sum(min(c.cached_tokens for c in g) for g in groups)
    completion = sum(c.completion_tokens for c in choices)
    details = (CompletionTokensDetails(reasoning_tokens=sum(c.reasoning_tokens for c in choices))
               if with_reasoning else None)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
                     completion_tokens_details=details)
