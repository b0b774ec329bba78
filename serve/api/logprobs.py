"""Token log-probabilities in OpenAI's two shapes: chat's `logprobs.content` list and the
legacy completions object (parallel `tokens` / `token_logprobs` / `top_logprobs` lists).

A token's `bytes` are its exact UTF-8 bytes: the vocabulary stores byte-level BPE tokens (each
byte written as one printable character, GPT-2 style), which are mapped back to bytes here;
added tokens such as `<｜end▁of▁sentence｜>` are stored as their text. `token` is those bytes
decoded, with U+FFFD where a token holds only part of a character.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from serve.api.responses import ChatTokenLogprob, CompletionLogprobs, TopLogprob
from serve.engine.base import TokenLogprob


class _Vocabulary(Protocol):
    def id_to_token(self, i: int) -> str | None: ...


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """The byte-level BPE alphabet, inverted: printable Latin-1 bytes stand for themselves,
    every other byte b is written as chr(256 + its rank among those bytes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    others = (b for b in range(256) if b not in table.values())
    for rank, b in enumerate(others):
        table[chr(256 + rank)] = b
    return table


class LogprobFormatter:
    """Formats the engine's `TokenLogprob`s for one vocabulary; caches token strings."""

    def __init__(self, vocabulary: _Vocabulary) -> None:
        self._vocab = vocabulary
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def token(self, token_id: int) -> tuple[str, list[int]]:
        """(text, UTF-8 bytes) of one token."""
        hit = self._cache.get(token_id)
        if hit is None:
            raw = self._vocab.id_to_token(token_id) or ""
            table = _byte_of_char()
            data = (bytes(table[c] for c in raw) if all(c in table for c in raw)
                    else raw.encode())
            hit = self._cache[token_id] = (data.decode("utf-8", errors="replace"), list(data))
        return hit

    def chat(self, logprobs: Sequence[TokenLogprob], top_n: int) -> list[ChatTokenLogprob]:
        """Chat's per-token entries, each with its `top_n` most likely alternatives."""
        out = []
        for lp in logprobs:
            text, data = self.token(lp.token_id)
            top = [TopLogprob(token=t, logprob=p, bytes=b)
                   for t, b, p in ((*self.token(i), p) for i, p in lp.top[:top_n])]
            out.append(ChatTokenLogprob(token=text, logprob=lp.logprob, bytes=data,
                                        top_logprobs=top))
        return out

    def completion(self, logprobs: Sequence[TokenLogprob], top_n: int,
                   text_offset: int) -> CompletionLogprobs:
        """The legacy shape for a run of tokens whose text starts at `text_offset`."""
        tokens: list[str] = []
        offsets: list[int] = []
        for lp in logprobs:
            text, _ = self.token(lp.token_id)
            tokens.append(text)
            offsets.append(text_offset)
            text_offset += len(text)
        tops = [{self.token(i)[0]: p for i, p in lp.top[:top_n]} for lp in logprobs]
        return CompletionLogprobs(tokens=tokens, token_logprobs=[lp.logprob for lp in logprobs],
                                  top_logprobs=tops if top_n > 0 else None,
                                  text_offset=offsets)
