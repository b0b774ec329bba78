"""Synthetic single-turn reasoning requests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loadtest import prompt_text
from loadtest.length_distribution import LengthDistribution
from loadtest.request_spec import Message, RequestSpec, Session
from loadtest.workloads.base import INSTRUCTION


@dataclass(frozen=True)
class SyntheticReasoning:
    """`num_requests` independent prompts with lengths from `input_lengths` and max_tokens from
    `output_lengths` (heavy-tailed, capped at 32K for R1). An optional shared system prompt of
    `system_prompt_tokens` gives every request the same prefix, as production deployments do."""

    num_requests: int
    input_lengths: LengthDistribution
    output_lengths: LengthDistribution
    system_prompt_tokens: int = 0
    seed: int = 0
    timed: bool = False

    def sessions(self) -> list[Session]:
        rng = np.random.default_rng(self.seed)
        inputs = self.input_lengths.sample(rng, self.num_requests)
        outputs = self.output_lengths.sample(rng, self.num_requests)
        system: tuple[Message, ...] = ()
        if self.system_prompt_tokens:
            system = (Message("system", prompt_text.text(f"system-{self.seed}",
                                                         self.system_prompt_tokens)),)
        instruction_tokens = len(INSTRUCTION.split())
        result = []
        for i, (n_in, n_out) in enumerate(zip(inputs, outputs, strict=True)):
            body = prompt_text.text(f"synthetic-{self.seed}-{i}", n_in)
            spec = RequestSpec(
                request_id=f"syn-{i}",
                messages=(*system, Message("user", INSTRUCTION + body)),
                max_tokens=n_out,
                expected_prompt_tokens=self.system_prompt_tokens + instruction_tokens + n_in,
            )
            result.append(Session(session_id=f"syn-{i}", turns=(spec,)))
        return result
