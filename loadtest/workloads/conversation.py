"""Multi-turn conversations that resend their growing history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loadtest import prompt_text
from loadtest.length_distribution import LengthDistribution
from loadtest.request_spec import Message, RequestSpec, Session
from loadtest.workloads.base import INSTRUCTION


@dataclass(frozen=True)
class MultiTurnConversations:
    """`num_conversations` users, each sending between `min_turns` and `max_turns` turns.

    Each turn is sent after the previous answer arrives plus `think_time_s`, with the whole
    history before it: earlier user messages and the answers the server gave (their `content`
    only, since the R1 chat template drops earlier turns' reasoning). Every turn therefore shares
    its prefix with the previous turn's prompt, which is what a prefix cache should catch.
    """

    num_conversations: int
    min_turns: int
    max_turns: int
    user_lengths: LengthDistribution
    output_lengths: LengthDistribution
    think_time_s: float = 0.0
    seed: int = 0
    timed: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError("turns must satisfy 1 <= --min-turns <= --max-turns")

    def sessions(self) -> list[Session]:
        rng = np.random.default_rng(self.seed)
        turn_counts = rng.integers(self.min_turns, self.max_turns + 1, self.num_conversations)
        total = int(turn_counts.sum())
        users = iter(self.user_lengths.sample(rng, total))
        outputs = iter(self.output_lengths.sample(rng, total))
        instruction_tokens = len(INSTRUCTION.split())
        result = []
        for c, n_turns in enumerate(turn_counts):
            turns = []
            for t in range(int(n_turns)):
                n_user = next(users)
                body = prompt_text.text(f"conv-{self.seed}-{c}-{t}", n_user)
                turns.append(RequestSpec(
                    request_id=f"conv-{c}-turn-{t}",
                    messages=(Message("user", INSTRUCTION + body),),
                    max_tokens=next(outputs),
                    # The turn's own tokens; the runner adds the history it resends.
                    expected_prompt_tokens=instruction_tokens + n_user,
                    think_time_s=self.think_time_s if t else 0.0,
                ))
            result.append(Session(session_id=f"conv-{c}", turns=tuple(turns),
                                  carry_history=True))
        return result
