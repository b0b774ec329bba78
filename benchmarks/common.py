"""Shared set-up for the benchmarks: a tiny checkpoint on disk, random prompts.

torch is imported only by the helpers that need it, so the simulation-only benchmarks
(router_replay, router_cost) do not load it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def tiny_checkpoint(path: str | None, arch: str = "deepseek-v3") -> Path:
    """The given checkpoint, or a fresh tiny fp32 one of `arch` (deepseek-v3, or a distill's
    qwen2 or llama) in a temporary directory."""
    from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint
    from serve.engine.reference.tiny_dense_checkpoint import write_tiny_dense_checkpoint

    if path:
        return Path(path)
    out = Path(tempfile.mkdtemp(prefix="r1serve-bench-"))
    if arch != "deepseek-v3":
        return write_tiny_dense_checkpoint(out, arch, seed=0, dtype="fp32")
    return write_tiny_checkpoint(out, seed=0, dtype="fp32")


def add_arch_argument(ap) -> None:
    """`--arch`: which tiny checkpoint a benchmark writes when it is given no `--model`."""
    ap.add_argument("--arch", choices=["deepseek-v3", "qwen2", "llama"], default="deepseek-v3",
                    help="tiny checkpoint to write when --model is not given")


def random_prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (length,), generator=g).tolist() for _ in range(n)]
