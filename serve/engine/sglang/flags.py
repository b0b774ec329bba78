"""`FlagTable`: the command-line surface of the pinned SGLang release, as data.

`data/cli_args.json` is SGLang 0.5.23's own `ServerArgs.add_cli_args` parser dumped flag by flag
(dest, spellings, default, choices, action). With it r1serve validates `engine.backend_args` and
renders `python -m sglang.launch_server` command lines without importing SGLang, which is not
installed where operators run `r1serve sglang-args`. The tests check the table against the
installed release's parser, so it cannot drift from the pin.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from serve.errors import ConfigError

SGLANG_VERSION = "0.5.23"

# Names earlier releases accepted that 0.5.23 removed; a user who copies an old recipe gets the
# replacement instead of a bare "unknown key".
REMOVED = {
    "enable_ep_moe": "set ep_size (engine.ep_size) instead",
    "enable_deepep_moe": "set moe_a2a_backend: deepep instead",
    "enable_dp_attention": "set attn_dp_size (engine.dp_attention) instead of dp_size + "
                           "enable_dp_attention",
    "cuda_graph_max_bs": "use cuda_graph_max_bs_decode (and cuda_graph_max_bs_prefill)",
}


@dataclass(frozen=True)
class FlagSpec:
    """One option of SGLang's parser."""

    dest: str  # the ServerArgs field it sets
    flag: str  # the canonical spelling, e.g. "--tp-size"
    kind: str  # "switch" (store_true), "bool" (--x/--no-x), "value", "list"
    type: str  # SGLang's converter name: "int", "float", "str", "human_readable_int", ...
    choices: tuple[Any, ...] | None
    deprecated: bool
    help: str

    def replacement(self) -> str:
        """What the help text says to use instead (deprecated flags only)."""
        m = re.search(r"[Uu]se (.+?)(?: instead|\)|$)", self.help)
        return m.group(1).strip() if m else "see SGLang's --help"


def _spec(entry: Mapping[str, Any]) -> FlagSpec:
    action = entry["action"]
    if action in ("_StoreTrueAction", "DeprecatedStoreTrueAction"):
        kind = "switch"
    elif action == "BooleanOptionalAction":
        kind = "bool"
    elif entry["nargs"] in ("+", "*"):
        kind = "list"
    else:
        kind = "value"
    help_text = entry["help"] or ""
    deprecated = action.startswith("Deprecated") or bool(
        re.match(r"\(?Deprecated", help_text))
    choices = tuple(entry["choices"]) if entry["choices"] is not None else None
    return FlagSpec(dest=entry["dest"], flag=entry["flags"][0], kind=kind, type=entry["type"],
                    choices=choices, deprecated=deprecated, help=help_text)


class FlagTable:
    """Every ServerArgs field the pinned release exposes on its command line, by dest."""

    def __init__(self, entries: list[Mapping[str, Any]]) -> None:
        self._by_dest: dict[str, FlagSpec] = {}
        for entry in entries:
            if entry["dest"] in ("help", "config"):
                continue  # not server settings
            spec = _spec(entry)
            # `--monokernel-backend` (deprecated) shares its dest with the current
            # `--enable-amd-monokernel`: keep the current spelling.
            if spec.dest in self._by_dest and spec.deprecated:
                continue
            self._by_dest[spec.dest] = spec

    @classmethod
    @functools.cache
    def pinned(cls) -> FlagTable:
        """The table of SGLang 0.5.23, shipped with r1serve."""
        text = resources.files("serve.engine.sglang").joinpath("data/cli_args.json").read_text()
        return cls(json.loads(text))

    def __contains__(self, dest: str) -> bool:
        return dest in self._by_dest

    def __getitem__(self, dest: str) -> FlagSpec:
        return self._by_dest[dest]

    @property
    def dests(self) -> frozenset[str]:
        return frozenset(self._by_dest)

    def check(self, dest: str, value: Any, where: str) -> None:
        """Raise `ConfigError` unless `dest` is a current option and `value` fits it.

        `where` names the knob in the message, e.g. "engine.backend_args".
        """
        if dest not in self._by_dest:
            hint = REMOVED.get(dest)
            if hint is None:
                close = difflib.get_close_matches(dest, self._by_dest, n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(close)}?" if close else (
                    "see `python -m sglang.launch_server --help`; keys are ServerArgs field "
                    "names (dashes become underscores)")
            raise ConfigError(f"{where}: unknown SGLang {SGLANG_VERSION} argument {dest!r}; "
                              f"{hint}", param=dest)
        spec = self._by_dest[dest]
        if spec.deprecated:
            hint = REMOVED.get(dest) or f"use {spec.replacement()}"
            raise ConfigError(f"{where}: {dest!r} ({spec.flag}) is deprecated in SGLang "
                              f"{SGLANG_VERSION}; {hint}", param=dest)
        problem = _value_problem(spec, value)
        if problem:
            raise ConfigError(f"{where}.{dest}={value!r}: {problem}", param=dest)

    def argv(self, dest: str, value: Any) -> list[str]:
        """The command-line words that set `dest` to `value` ([] for an unset switch)."""
        spec = self._by_dest[dest]
        if spec.kind == "switch":
            return [spec.flag] if value else []
        if spec.kind == "bool":
            return [spec.flag if value else "--no-" + spec.flag.removeprefix("--")]
        if spec.kind == "list":
            return [spec.flag, *(_word(v) for v in value)]
        return [spec.flag, _word(value)]


def _value_problem(spec: FlagSpec, value: Any) -> str | None:
    if spec.kind in ("switch", "bool"):
        return None if isinstance(value, bool) else "must be true or false"
    if value is None:
        return "null is not a value; leave the key out to keep SGLang's default"
    values = value if spec.kind == "list" else [value]
    if spec.kind == "list" and not isinstance(value, list | tuple):
        return "must be a list"
    for v in values:
        if spec.type in ("int", "human_readable_int") and (
                isinstance(v, bool) or not isinstance(v, int)):
            return "must be an integer"
        if spec.type == "float" and (isinstance(v, bool) or not isinstance(v, int | float)):
            return "must be a number"
        if spec.choices is not None and v not in spec.choices:
            return f"must be one of {', '.join(map(str, spec.choices))}"
    return None


def _word(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
