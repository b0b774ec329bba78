"""`StreamAdapter`: SGLang's cumulative stream chunks in, r1serve `TokenDelta`s out.

`async_generate(..., stream=True)` yields one dict per scheduler step, each holding the whole
output so far (unless `--incremental-streaming-output`, which r1serve never sets):

    {"text": str, "output_ids": [int, ...],
     "meta_info": {"finish_reason": None | {"type": "stop"|"length"|"abort", ...},
                   "prompt_tokens": int, "completion_tokens": int, "cached_tokens": int,
                   "output_token_logprobs": [(logprob, id, text|None), ...],
                   "output_top_logprobs": [[(logprob, id, text|None), ...] | None, ...]}}

The adapter emits only what is new and final:
- text whose last character may still change is held back: a trailing U+FFFD (a multi-byte
  character split across tokens; SGLang's detokenizer holds those bytes back itself, the
  adapter does not count on it) and the last `len(longest stop string) - 1` characters, since a
  prefix of a stop string must never reach the client;
- the final chunk releases the rest, cut at the first stop string. SGLang's detokenizer trims a
  matched stop string only from the text it has not streamed yet: the start of the string it
  streamed before the string completed ("</" of "</answer>") stays in its cumulative text, and
  the adapter drops it. (Text that itself ended in the stop string's first characters just
  before it would lose them too; SGLang's text cannot tell the two apart.)

Usage comes from SGLang's counts, except that a request aborted in SGLang's waiting queue
comes back without `prompt_tokens` or `cached_tokens`: the prompt r1serve sent stands for the
first, and nothing was served from cache.
The adapter is pure: no SGLang import, tested on streams recorded from SGLang's own code
(`scripts/record_sglang_streams.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from serve.engine.base import FinishReason, TokenDelta, TokenLogprob, Usage
from serve.errors import InvalidRequestError

log = logging.getLogger(__name__)

_REPLACEMENT = "\ufffd"


class StreamAdapter:
    """Turns one request's cumulative SGLang chunks into `TokenDelta`s."""

    def __init__(self, request_id: str, stop: Sequence[str] = (), logprobs: bool = False,
                 prompt_tokens: int = 0) -> None:
        self.request_id = request_id
        self.stop = tuple(stop)
        self.logprobs = logprobs
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._text = ""  # all text emitted so far
        self._num_ids = 0  # output ids emitted so far
        self._num_logprobs = 0
        self.finished = False
        # Token counts as of the last chunk that had them (SGLang repeats the prompt's in every
        # chunk); until then, the prompt the caller sent.
        self.completion_tokens = 0
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = 0
        self.queue_time_s: float | None = None  # SGLang's meta_info "queue_time"

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return self._text

    def feed(self, chunk: Mapping[str, Any]) -> TokenDelta | None:
        """One chunk in; the delta it completes out, or None when it adds nothing emittable.

        Raises `InvalidRequestError` when SGLang rejected the request before any output (an
        abort with a 4xx status, e.g. a prompt longer than the context).
        """
        if self.finished:
            raise RuntimeError(f"request {self.request_id}: chunk after the final one")
        meta = chunk.get("meta_info") or {}
        reason = meta.get("finish_reason")
        ids = list(chunk.get("output_ids") or ())  # SGLang reuses this list: copy it now
        self.completion_tokens = int(meta.get("completion_tokens", len(ids)))
        if meta.get("prompt_tokens") is not None:
            self.prompt_tokens = int(meta["prompt_tokens"])
        if meta.get("cached_tokens") is not None:
            self.cached_tokens = _cached(meta["cached_tokens"])
        if meta.get("queue_time") is not None:  # seconds queued in SGLang's scheduler
            self.queue_time_s = float(meta["queue_time"])
        new_ids = tuple(ids[self._num_ids:])
        self._num_ids = max(self._num_ids, len(ids))
        logprobs = self._new_logprobs(meta)
        text = chunk.get("text") or ""
        if reason is None:
            piece = self._advance(self._emittable(text))
            if not new_ids and not piece and not logprobs:
                return None
            return TokenDelta(self.request_id, new_ids, piece, logprobs)
        self.finished = True
        finish, error = _finish(reason)
        if finish in ("abort", "error") and error and _is_client_error(reason) \
                and not self._text and not self._num_logprobs and not ids:
            raise InvalidRequestError(f"SGLang rejected the request: {error}")
        piece = self._advance(self._final_text(text, reason), final=True)
        usage = Usage(prompt_tokens=self.prompt_tokens,
                      completion_tokens=self.completion_tokens,
                      cached_tokens=self.cached_tokens)
        return TokenDelta(self.request_id, new_ids, piece, logprobs, finish, usage,
                          error if finish == "error" else None)

    # -- text ---------------------------------------------------------------------------------

    def _emittable(self, text: str) -> str:
        """The prefix of an intermediate cumulative text that can no longer change."""
        safe = self._cut_at_stop(text)
        if len(safe) == len(text):  # no complete stop string: keep a possible prefix back
            safe = safe[:max(len(safe) - self._hold, 0)]
        return safe.rstrip(_REPLACEMENT)

    def _final_text(self, text: str, reason: Any) -> str:
        """SGLang's final text, cut at a stop string and without the start of the matched one
        that SGLang streamed before it completed (see the module docstring)."""
        text = self._cut_at_stop(text)
        matched = reason.get("matched") if isinstance(reason, Mapping) else None
        if isinstance(matched, str) and matched in self.stop:
            for k in range(min(len(matched) - 1, len(text)), 0, -1):
                if text.endswith(matched[:k]):
                    return text[:-k]
        return text

    def _cut_at_stop(self, text: str) -> str:
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        return text if cut < 0 else text[:cut]

    def _advance(self, upto: str, final: bool = False) -> str:
        """The part of `upto` not yet emitted; `upto` must extend what was emitted."""
        if len(upto) <= len(self._text) and not final:
            return ""
        if not upto.startswith(self._text):
            # SGLang revised text it had already streamed (it never should, given what is held
            # back). What went out cannot be taken back; keep the stream append-only.
            log.warning("request %s: SGLang's text diverged from the %d characters already "
                        "streamed; dropping the difference", self.request_id, len(self._text))
            return ""
        piece = upto[len(self._text):]
        self._text = upto
        return piece

    # -- logprobs -----------------------------------------------------------------------------

    def _new_logprobs(self, meta: Mapping[str, Any]) -> tuple[TokenLogprob, ...] | None:
        if not self.logprobs:
            return None
        chosen = meta.get("output_token_logprobs") or []
        tops = meta.get("output_top_logprobs") or []
        out = []
        for i in range(self._num_logprobs, len(chosen)):
            logprob, token_id = chosen[i][0], chosen[i][1]
            top = tops[i] if i < len(tops) and tops[i] else ()
            out.append(TokenLogprob(int(token_id), float(logprob),
                                    tuple((int(t[1]), float(t[0])) for t in top)))
        self._num_logprobs = len(chosen)
        return tuple(out) or None


def _finish(reason: Any) -> tuple[FinishReason, str | None]:
    """SGLang's finish_reason -> ours, plus the error message when there is one."""
    kind = reason.get("type") if isinstance(reason, Mapping) else str(reason)
    message = reason.get("message") if isinstance(reason, Mapping) else None
    if kind == "stop":
        return "stop", None
    if kind == "length":
        return "length", None
    if kind == "abort":
        status = reason.get("status_code") if isinstance(reason, Mapping) else None
        if isinstance(status, int) and status >= 500:
            return "error", message or "SGLang aborted the request"
        return "abort", message
    return "error", f"unknown SGLang finish reason {reason!r}"


def _is_client_error(reason: Any) -> bool:
    status = reason.get("status_code") if isinstance(reason, Mapping) else None
    return isinstance(status, int) and 400 <= status < 500


def _cached(value: Any) -> int:
    # SGLang reports an int; some configurations report a per-tier breakdown dict.
    if isinstance(value, Mapping):
        return int(sum(v for v in value.values() if isinstance(v, int | float)))
    return int(value or 0)
