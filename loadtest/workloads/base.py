"""The workload interface."""

from __future__ import annotations

from typing import Protocol

from loadtest.request_spec import Session

# Prepended to every synthetic prompt so a reasoning model has something to reason about; the
# length of the answer is set by max_tokens (and the server's ignore_eos, where it has one).
INSTRUCTION = ("Read the following notes carefully, then reason step by step about what they "
               "have in common and summarise it in one paragraph.")


class Workload(Protocol):
    """A source of sessions. Trace workloads set each session's `arrival_s` from the trace;
    the others leave it at 0 for an arrival process to fill in."""

    #: True when sessions carry arrival times of their own (trace replay).
    timed: bool

    def sessions(self) -> list[Session]:
        """All sessions, in arrival order, deterministic for a given configuration."""
        ...
