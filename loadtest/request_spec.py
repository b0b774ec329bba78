"""What the generator sends: chat turns grouped into sessions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """One OpenAI chat message."""

    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class RequestSpec:
    """One chat-completion request.

    `messages` are the messages this turn *adds*: for a single-turn session they are the whole
    conversation; for a later turn of a multi-turn session the runner prepends the history
    (earlier turns' messages and the answers the server actually gave).
    """

    request_id: str
    messages: tuple[Message, ...]
    max_tokens: int
    # Our estimate of the prompt's tokens (the synthetic text is built at ~1 token per word);
    # compared against the server's `usage.prompt_tokens` to measure the approximation.
    expected_prompt_tokens: int | None = None
    # Seconds a user "thinks" after the previous turn's answer before sending this one.
    think_time_s: float = 0.0


@dataclass(frozen=True)
class Session:
    """A user: one or more turns sent one after another, each after the previous answer.

    `arrival_s` is when the first turn is due, relative to the run's start; the arrival process
    sets it (trace workloads bring their own, which `TraceArrivals` scales).
    """

    session_id: str
    turns: tuple[RequestSpec, ...]
    arrival_s: float = 0.0
    carry_history: bool = field(default=False)

    @property
    def num_requests(self) -> int:
        return len(self.turns)
