"""`from_fields`: a frozen dataclass of tuning values from a user's dict, where a key that is
not one of its fields is an error naming it and the known ones."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_fields(cls: type[T], data: dict[str, Any], what: str) -> T:
    """`cls(**data)`; `what` names the keys in the error ("router knob(s)")."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return cls(**data)
