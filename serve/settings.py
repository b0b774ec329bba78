"""Environment variables, read in one typed place. Every name starts with R1SERVE_."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    cache_dir: Path  # R1SERVE_CACHE_DIR: generated checkpoints and other cached files
    log_level: str  # R1SERVE_LOG_LEVEL

    @classmethod
    def from_env(cls) -> Settings:
        default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "r1serve"
        return cls(
            cache_dir=Path(os.environ.get("R1SERVE_CACHE_DIR", default_cache)),
            log_level=os.environ.get("R1SERVE_LOG_LEVEL", "INFO").upper(),
        )
