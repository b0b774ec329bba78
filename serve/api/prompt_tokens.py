"""`prompt_tokens`: a prompt's text to token ids, refusing text that cannot fit the context
before paying to tokenize it.

A token stands for at most `max_token_chars` characters of text, so text of `c` characters is
at least `c / max_token_chars` tokens; text past that bound is refused by its length alone.
"""

from __future__ import annotations

from serve.api.tokenizer_protocol import ApiTokenizer
from serve.errors import ContextLengthError


def prompt_tokens(tokenizer: ApiTokenizer, text: str, context_length: int, param: str,
                  add_bos: bool | None = None) -> list[int]:
    """Token ids of `text`; `ContextLengthError` naming `param` when its length alone shows it
    leaves no room for output in `context_length`."""
    longest = tokenizer.max_token_chars
    if longest:
        least = -(-len(text) // longest)
        if least >= context_length:
            raise ContextLengthError(
                f"the prompt is {len(text)} characters, so at least {least} tokens (no token "
                f"of this model is longer than {longest} characters), which leaves no room for "
                f"output in the context length of {context_length}; shorten it", param=param)
    return tokenizer.encode(text, add_bos=add_bos)
