"""Split R1's output into `reasoning_content` and `content`, as DeepSeek's own API does.

R1's chat template ends the prompt with `<think>\\n`, so generation starts inside the reasoning:
everything up to `</think>` is reasoning, everything after is the answer, with the newlines
right after `</think>` stripped. A model that opens with its own `<think>` is tolerated (the tag
and the newlines after it are dropped). Text arrives in arbitrary pieces, so a tag split across
deltas is held back until it is known to be (or not to be) a tag; no partial tag ever reaches
either field.

If the output ends without `</think>`, all of it is reasoning and the answer is absent:
`answer_started` stays False and the ingress reports `content: null`, leaving the finish reason
as the engine gave it (usually "length"), so a client can tell "no answer" from "empty answer".

Token accounting uses ids, not text: tokens up to and including the first `</think>` id are
reasoning tokens (`completion_tokens_details.reasoning_tokens`), the rest are answer tokens.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

THINK_START = "<think>"
THINK_END = "</think>"


@dataclass(frozen=True)
class ReasoningDelta:
    """Text of one step, split. Either part may be empty."""

    reasoning: str = ""
    content: str = ""


class _State(enum.Enum):
    OPENING = "opening"  # before any text: the model may still emit its own `<think>`
    AFTER_OPEN = "after_open"  # just dropped a leading `<think>`; strip newlines
    REASONING = "reasoning"
    AFTER_CLOSE = "after_close"  # just passed `</think>`; strip newlines
    ANSWER = "answer"


class ReasoningSplitter:
    """Incremental splitter for one choice. Feed `push` every delta, then call `flush` once."""

    def __init__(self, think_end_id: int | None) -> None:
        """think_end_id: the tokenizer's id of `</think>` (None when the vocabulary has none;
        then reasoning tokens are counted from where the text split happened)."""
        self._think_end_id = think_end_id
        self._state = _State.OPENING
        self._held = ""  # text not yet assigned to a side: a possible partial tag
        self._tokens = 0
        self._reasoning_tokens: int | None = None  # set once the boundary token is seen

    @property
    def answer_started(self) -> bool:
        """True once `</think>` has been seen: the answer exists, even if it is empty."""
        return self._state in (_State.AFTER_CLOSE, _State.ANSWER)

    @property
    def completion_tokens(self) -> int:
        return self._tokens

    @property
    def reasoning_tokens(self) -> int:
        """Tokens up to and including `</think>`; all tokens while no `</think>` was seen."""
        return self._tokens if self._reasoning_tokens is None else self._reasoning_tokens

    @property
    def answer_tokens(self) -> int:
        return self._tokens - self.reasoning_tokens

    def push(self, text: str, token_ids: Iterable[int] = ()) -> ReasoningDelta:
        """Add the next piece of generated text and the token ids that produced it."""
        was_reasoning = not self.answer_started
        for token in token_ids:
            self._tokens += 1
            if token == self._think_end_id and self._reasoning_tokens is None:
                self._reasoning_tokens = self._tokens
        out = self._split(text)
        if was_reasoning and self.answer_started and self._reasoning_tokens is None:
            # `</think>` came as plain text (no tag token): the boundary is this delta.
            self._reasoning_tokens = self._tokens
        return out

    def flush(self) -> ReasoningDelta:
        """The stream ended: text held as a possible tag was not one after all."""
        held, self._held = self._held, ""
        if self._state in (_State.OPENING, _State.AFTER_OPEN, _State.REASONING):
            return ReasoningDelta(reasoning=held)
        return ReasoningDelta(content=held)

    # -- the state machine --------------------------------------------------------------------

    def _split(self, text: str) -> ReasoningDelta:
        buf = self._held + text
        self._held = ""
        reasoning: list[str] = []
        content: list[str] = []
        while buf:
            match self._state:
                case _State.OPENING:
                    stripped = buf.lstrip()
                    if stripped.startswith(THINK_START):
                        buf = stripped[len(THINK_START):]
                        self._state = _State.AFTER_OPEN
                    elif THINK_START.startswith(stripped):
                        self._held, buf = buf, ""  # could still become `<think>`
                    else:
                        self._state = _State.REASONING
                case _State.AFTER_OPEN | _State.AFTER_CLOSE:
                    buf = buf.lstrip("\n")
                    if buf:
                        self._state = (_State.REASONING if self._state is _State.AFTER_OPEN
                                       else _State.ANSWER)
                case _State.REASONING:
                    end = buf.find(THINK_END)
                    if end >= 0:
                        reasoning.append(buf[:end])
                        buf = buf[end + len(THINK_END):]
                        self._state = _State.AFTER_CLOSE
                    else:
                        keep = _partial_suffix(buf, THINK_END)
                        reasoning.append(buf[:len(buf) - keep])
                        self._held, buf = buf[len(buf) - keep:], ""
                case _State.ANSWER:
                    content.append(buf)
                    buf = ""
        return ReasoningDelta("".join(reasoning), "".join(content))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
