"""`EngineConfig`: the reference engine's capacity and batching, frozen.

Built from the user's config by `from_config`; the config schema (`serve.config.EngineSection`)
is where these values are validated, once, so nothing here checks them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serve.config import R1ServeConfig


@dataclass(frozen=True)
class EngineConfig:
    """Capacity and batching knobs of the reference engine, per data-parallel rank."""

    page_size: int = 16  # tokens per KV page; also the prefix-cache block size
    kv_pages: int = 4096  # KV budget in pages
    max_running: int = 64  # requests decoding at once, at most max_batched_tokens
    max_batched_tokens: int = 512  # tokens per step; longer prompts are prefilled in chunks
    max_model_len: int = 32768  # context length (prompt + output), capped by the model's
    prefix_cache: bool = True

    @classmethod
    def from_config(cls, config: R1ServeConfig) -> EngineConfig:
        e = config.engine
        return cls(page_size=e.page_size, kv_pages=e.kv_pages, max_running=e.max_running,
                   max_batched_tokens=e.max_batched_tokens,
                   max_model_len=config.model.context_length, prefix_cache=e.prefix_cache)
