"""Environment variables, read in one typed place. Every name starts with R1SERVE_."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from serve.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    cache_dir: Path  # R1SERVE_CACHE_DIR: generated checkpoints and other cached files
    log_level: str  # R1SERVE_LOG_LEVEL
    # R1SERVE_HTTP_HEADER_TIMEOUT_S: seconds the HTTP proxy waits for a request's head (request
    # line and headers) before closing the connection; 0 waits forever
    http_header_timeout_s: float

    @classmethod
    def from_env(cls) -> Settings:
        default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "r1serve"
        return cls(
            cache_dir=Path(os.environ.get("R1SERVE_CACHE_DIR", default_cache)),
            log_level=os.environ.get("R1SERVE_LOG_LEVEL", "INFO").upper(),
            http_header_timeout_s=_seconds("R1SERVE_HTTP_HEADER_TIMEOUT_S", 20.0),
        )


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds, 0 or more")
    return value
