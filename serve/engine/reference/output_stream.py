"""`OutputStream`: one sequence's sampled tokens turned into text deltas, with stop rules."""

from __future__ import annotations

from serve.engine.base import FinishReason, GenerationRequest
from serve.engine.reference.detokenizer import IncrementalDetokenizer
from serve.engine.reference.tokenizer import Tokenizer


class OutputStream:
    """Holds back just enough text that a stop string split across tokens is never emitted."""

    def __init__(self, request: GenerationRequest, tokenizer: Tokenizer, max_model_len: int,
                 eos_token_id: int) -> None:
        sp = request.sampling
        self.sampling = sp
        self.prompt_len = len(request.prompt_token_ids)
        self.max_model_len = max_model_len
        self.eos_token_id = eos_token_id
        self.stop_ids = frozenset(sp.stop_token_ids)
        self.detok = IncrementalDetokenizer(tokenizer, list(request.prompt_token_ids[-4:]),
                                            skip_special_tokens=sp.skip_special_tokens)
        self.hold = max((len(s) for s in sp.stop), default=1) - 1
        self.pending = ""
        self.num_generated = 0

    def append(self, token_id: int) -> tuple[str, FinishReason | None]:
        """Add one generated token; return (text to emit now, finish reason or None)."""
        self.num_generated += 1
        finish: FinishReason | None = None
        if token_id in self.stop_ids or (
                token_id == self.eos_token_id and not self.sampling.ignore_eos):
            finish = "stop"
        else:
            self.pending += self.detok.push(token_id)
        if finish is None and (self.num_generated >= self.sampling.max_tokens
                               or self.prompt_len + self.num_generated >= self.max_model_len):
            finish = "length"
        if finish is not None:  # nothing more will come: release held-back bytes
            self.pending += self.detok.flush()
        if self.sampling.stop:
            cut = min((i for i in (self.pending.find(s) for s in self.sampling.stop) if i >= 0),
                      default=-1)
            if cut >= 0:
                self.pending, finish = self.pending[:cut], "stop"
        if finish is not None:
            text, self.pending = self.pending, ""
            return text, finish
        ready = len(self.pending) - self.hold
        if ready <= 0:
            return "", None
        text, self.pending = self.pending[:ready], self.pending[ready:]
        return text, None
