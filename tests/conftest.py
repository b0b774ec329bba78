"""Fixtures shared by every test package: tiny R1-architecture checkpoints, written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_fp32_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint (seed 0, float32, 3 shards). Read-only: copy it to modify it."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-fp32"), seed=0, dtype="fp32")


@pytest.fixture(scope="session")
def tiny_fp8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as `tiny_fp32_dir`, stored as R1 ships them: FP8 e4m3 linear weights
    with 128x128 block scales, the rest bf16. Read-only: copy it to modify it."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-fp8"), seed=0, dtype="fp8")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny distilled-R1 Qwen2 checkpoint (seed 0, float32, 3 shards). Read-only."""
    from serve.engine.reference.tiny_dense_checkpoint import write_tiny_dense_checkpoint

    return write_tiny_dense_checkpoint(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny distilled-R1 Llama checkpoint (seed 0, float32, 3 shards). Read-only."""
    from serve.engine.reference.tiny_dense_checkpoint import write_tiny_dense_checkpoint

    return write_tiny_dense_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama")
