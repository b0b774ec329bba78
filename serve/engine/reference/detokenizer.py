"""`IncrementalDetokenizer`: turn a stream of token ids into text pieces, one push at a time.

Byte-level BPE splits a multi-byte character (emoji, CJK) over several tokens, and decoding a
prefix of them yields U+FFFD. The detokenizer holds text back while the decoded tail ends in
U+FFFD and emits it once the character is whole, so streamed pieces never carry a broken
character and concatenate to exactly `tokenizer.decode(all_ids)`.

Cost per token is O(1): only a short window is decoded, from `prefix_offset` (the start of the
last emitted piece, kept as context so tokenizers that drop a leading space, like
SentencePiece, decode the boundary right) to the end. Each emission moves the window forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

_REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Decodes one request's generated tokens as they arrive."""

    def __init__(
        self,
        tokenizer: Decoder,
        prompt_ids_tail: Iterable[int] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        """prompt_ids_tail: the last few prompt ids, decoded only as context for the first
        generated token (a handful is enough; more costs time, not correctness)."""
        self._tok = tokenizer
        self._skip = skip_special_tokens
        tail = list(prompt_ids_tail)
        # A tail ending inside a character would glue the prompt's bytes onto the first
        # generated token's; then decode the generated ids on their own instead.
        if tail and self._decode(tail).endswith(_REPLACEMENT):
            tail = []
        self._ids: list[int] = tail
        self._prefix_offset = 0  # start of the context window
        self._read_offset = len(tail)  # ids before this are already emitted as text
        self._pieces: list[str] = []
        self._num_generated = 0

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return "".join(self._pieces)

    @property
    def num_generated(self) -> int:
        return self._num_generated

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text it completes ("" while a character is split
        over tokens, or the token decodes to nothing)."""
        self._ids.append(token_id)
        self._num_generated += 1
        prefix_text = self._decode(self._ids[self._prefix_offset:self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset:])
        if len(new_text) <= len(prefix_text) or new_text.endswith(_REPLACEMENT):
            return ""
        return self._emit(new_text[len(prefix_text):])

    def flush(self) -> str:
        """At the end of the stream: return whatever is still held back, U+FFFD included."""
        prefix_text = self._decode(self._ids[self._prefix_offset:self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset:])
        if len(new_text) <= len(prefix_text):
            return ""
        return self._emit(new_text[len(prefix_text):])

    def _emit(self, piece: str) -> str:
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        self._pieces.append(piece)
        return piece

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip) if ids else ""
