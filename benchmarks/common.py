"""Shared set-up for the benchmarks: a tiny checkpoint on disk and random prompts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint


def tiny_checkpoint(path: str | None) -> Path:
    """The given checkpoint, or a fresh tiny fp32 one in a temporary directory."""
    if path:
        return Path(path)
    return write_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="r1serve-bench-")), seed=0,
                                 dtype="fp32")


def random_prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (length,), generator=g).tolist() for _ in range(n)]
