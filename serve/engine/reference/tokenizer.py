"""`Tokenizer`: a checkpoint's Hugging Face fast tokenizer and its chat template.

Reads `tokenizer.json` and `tokenizer_config.json` exactly as transformers does, without
importing transformers: the `tokenizers` library encodes and decodes, jinja2's sandbox renders
the chat template with the options transformers uses, so prompts are byte-identical to
`AutoTokenizer.apply_chat_template`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer

from serve.errors import CheckpointError

THINK_START = "<think>"
THINK_END = "</think>"


class Tokenizer:
    """Encode, decode and render chats for one checkpoint's vocabulary."""

    def __init__(self, backend: HFTokenizer, config: Mapping[str, Any], source: str = "") -> None:
        """Wrap a loaded `tokenizers.Tokenizer` and the parsed tokenizer_config.json.

        Raises `CheckpointError` when the BOS or EOS token the config names is not in the
        vocabulary. Most callers want `Tokenizer.from_dir`.
        """
        self._tok = backend
        self._source = source or "tokenizer_config.json"
        self._add_bos = bool(config.get("add_bos_token", False))
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self._bos_id = self._require_id(self.bos_token, "bos_token")
        self._eos_id = self._require_id(self.eos_token, "eos_token")
        added = backend.get_added_tokens_decoder()
        self._special_ids = frozenset(i for i, t in added.items() if t.special)
        self._think_start_id = backend.token_to_id(THINK_START)
        self._think_end_id = backend.token_to_id(THINK_END)
        template = config.get("chat_template")
        if isinstance(template, list):  # a list of named templates; use "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self._template = None if template is None else _chat_environment().from_string(template)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json` and `tokenizer_config.json` from a checkpoint directory.

        A `chat_template.jinja` file beside them is used when the config has no template,
        as newer transformers versions save it.
        """
        path = Path(path)
        tok_file, cfg_file = path / "tokenizer.json", path / "tokenizer_config.json"
        for f, what in ((tok_file, "the fast-tokenizer vocabulary"),
                        (cfg_file, "BOS/EOS tokens and the chat template")):
            if not f.is_file():
                raise CheckpointError(
                    f"{f} is missing: the checkpoint needs {f.name} ({what}); "
                    "point the model path at a complete Hugging Face checkpoint directory")
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{cfg_file}: cannot read tokenizer config: {e}") from e
        try:
            backend = HFTokenizer.from_file(str(tok_file))
        except Exception as e:  # the Rust loader raises a bare Exception
            raise CheckpointError(f"{tok_file}: cannot load tokenizer: {e}") from e
        template_file = path / "chat_template.jinja"
        if config.get("chat_template") is None and template_file.is_file():
            config["chat_template"] = template_file.read_text(encoding="utf-8")
        return cls(backend, config, source=str(cfg_file))

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def bos_token_id(self) -> int:
        return self._bos_id

    @property
    def eos_token_id(self) -> int:
        return self._eos_id

    @property
    def special_token_ids(self) -> frozenset[int]:
        """Ids that `decode(skip_special_tokens=True)` drops; `<think>` tags are not among them."""
        return self._special_ids

    @property
    def think_start_id(self) -> int | None:
        """Id of `<think>`, or None when the vocabulary has no such token."""
        return self._think_start_id

    @property
    def think_end_id(self) -> int | None:
        """Id of `</think>`, or None when the vocabulary has no such token."""
        return self._think_end_id

    @functools.cached_property
    def max_token_chars(self) -> int | None:
        """Most characters of text one token stands for, or None when the tokenizer normalizes
        text first (a normalizer may shrink it, and then no bound holds).

        A vocabulary string is one character per byte of a byte-level token and the literal
        text of an added token; either way no shorter than the text the token encodes."""
        if self._tok.normalizer is not None:
            return None
        return max(len(t) for t in self._tok.get_vocab(with_added_tokens=True))

    def id_to_token(self, i: int) -> str | None:
        """The token's vocabulary string (byte-level form), or None for an unknown id."""
        return self._tok.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    # -- text <-> ids -------------------------------------------------------------------------

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; special-token text inside it becomes the special token.

        add_bos: None follows tokenizer_config's `add_bos_token`. A BOS is never doubled: text
        that already starts with the BOS token's text gets no second one.
        """
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_bos is None:
            add_bos = self._add_bos
        if add_bos and not text.startswith(self.bos_token):
            ids.insert(0, self._bos_id)
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; bytes that do not form whole UTF-8 characters decode to U+FFFD."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # -- chat ---------------------------------------------------------------------------------

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        **template_vars: Any,
    ) -> str:
        """The prompt string the chat template makes of `messages` (R1's starts with BOS and,
        with `add_generation_prompt`, ends with `<｜Assistant｜><think>\\n`).

        Extra keyword arguments (e.g. `tools`) become template variables, as in transformers.
        """
        if self._template is None:
            raise CheckpointError(
                f"{self._source} has no chat_template; add one to tokenizer_config.json or a "
                "chat_template.jinja file to the checkpoint directory")
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                pad_token=self.pad_token,
                **template_vars,
            )
        except jinja2.TemplateError as e:
            raise CheckpointError(f"{self._source}: chat template failed: {e}") from e

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
        **template_vars: Any,
    ) -> list[int]:
        """Token ids of `render_chat(...)`; the template writes the BOS, none is added."""
        text = self.render_chat(messages, add_generation_prompt, **template_vars)
        return self.encode(text, add_bos=False)

    def _require_id(self, token: str, key: str) -> int:
        i = self._tok.token_to_id(token) if token else None
        if i is None:
            raise CheckpointError(
                f"{self._source}: {key} {token!r} is not in tokenizer.json's vocabulary")
        return i


def _token_text(value: Any) -> str:
    """tokenizer_config stores a token as a string or as an AddedToken dict."""
    if isinstance(value, Mapping):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # jinja's own tojson escapes HTML characters; chat templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _chat_environment() -> ImmutableSandboxedEnvironment:
    """The sandbox and options transformers renders chat templates with; templates from a
    checkpoint are untrusted code."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env
