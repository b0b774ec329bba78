"""`ApiTokenizer`: what the ingress needs of a tokenizer (the reference engine's `Tokenizer`
has it all), so that the HTTP layer does not depend on an engine package."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class ApiTokenizer(Protocol):
    @property
    def vocab_size(self) -> int: ...

    @property
    def think_end_id(self) -> int | None: ...

    @property
    def max_token_chars(self) -> int | None:
        """Most characters of text one token stands for (None: no bound is known)."""
        ...

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]: ...

    def render_chat(self, messages: Sequence[Mapping[str, Any]],
                    add_generation_prompt: bool = True, **template_vars: Any) -> str: ...

    def id_to_token(self, i: int) -> str | None: ...
