"""Model executors: where an engine step's forward passes run.

The engine schedules each data-parallel rank separately and hands the executor one batch per
rank; the executor returns each rank's next-token logits. `LocalExecutor` runs one rank in
this process; the expert-parallel executor runs one Ray actor per rank in lockstep.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from serve.engine.reference.model import Transformer
from serve.engine.reference.model_runner import ModelRunner, StepItem


class ModelExecutor(abc.ABC):
    num_ranks: int

    @abc.abstractmethod
    def run(self, batches: Sequence[Sequence[StepItem]]) -> list[torch.Tensor | None]:
        """One step on every rank (ranks with no items still take part); logits per rank."""

    @abc.abstractmethod
    def expert_counts(self) -> list[list[int]]:
        """Tokens routed to each expert per MoE layer, summed over ranks (EPLB's input)."""

    def healthy(self) -> bool:
        return True

    def shutdown(self) -> None:  # noqa: B027 - nothing to release by default
        """Release ranks and their resources."""


class LocalExecutor(ModelExecutor):
    """One rank, in this process."""

    num_ranks = 1

    def __init__(self, model: Transformer, kv_pages: int, page_size: int) -> None:
        self.runner = ModelRunner(model, kv_pages, page_size)

    def run(self, batches: Sequence[Sequence[StepItem]]) -> list[torch.Tensor | None]:
        (items,) = batches
        return [self.runner.run(items) if items else None]

    def expert_counts(self) -> list[list[int]]:
        return self.runner.model.expert_counts()
