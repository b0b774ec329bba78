"""Shared set-up for the benchmarks: a tiny checkpoint on disk, random prompts, percentiles.

torch is imported only by the helpers that need it, so the simulation-only benchmarks
(router_replay, router_cost) do not load it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path


def percentile(xs: Iterable[float], q: float) -> float:
    """The sample at rank floor(q * n) of the sorted values (the largest for q near 1)."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tiny_checkpoint(path: str | None) -> Path:
    """The given checkpoint, or a fresh tiny fp32 one in a temporary directory."""
    from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint

    if path:
        return Path(path)
    return write_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="r1serve-bench-")), seed=0,
                                 dtype="fp32")


def random_prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (length,), generator=g).tolist() for _ in range(n)]
