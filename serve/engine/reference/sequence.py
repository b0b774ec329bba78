"""`Sequence`: one request's mutable state inside the engine (tokens, pages, progress)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from serve.engine.base import GenerationRequest
from serve.engine.load_meter import StreamState


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Prompt plus generated tokens, and where their KV lives.

    `pages[:tree_pages]` belong to the prefix cache (held through `prefix_node`'s lock); the
    rest belong to this sequence alone. Only the `KVCacheManager` changes them.
    """

    request: GenerationRequest
    arrival: int  # admission order, for FCFS and for picking whom to preempt
    token_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed: int = 0  # tokens whose KV is in the cache
    pages: list[int] = field(default_factory=list)
    tree_pages: int = 0
    prefix_node: Any = None  # radix-cache node locked for this sequence
    cached_prompt_tokens: int | None = None  # prefix-cache hit at first admission
    generator: torch.Generator | None = None
    arrival_time: float = field(default_factory=time.monotonic)  # by the engine's clock
    prefill_started: float | None = None  # when a step first computed its prompt

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.request.prompt_token_ids)
        seed = self.request.sampling.seed
        if seed is not None and self.generator is None:
            self.generator = torch.Generator().manual_seed(seed)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def prompt_len(self) -> int:
        return len(self.request.prompt_token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.prompt_len

    @property
    def remaining_prefill(self) -> int:
        """Tokens to compute before the next token can be sampled."""
        return len(self.token_ids) - self.num_computed

    def stream_state(self) -> StreamState:
        """This request as the engine's load meter counts it."""
        return StreamState(self.prompt_len, self.remaining_prefill, self.num_generated,
                           self.request.sampling.max_tokens, self.status is Status.RUNNING)
