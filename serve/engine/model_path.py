"""`model_path(config)`: the checkpoint directory of the configured model, for any backend."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from serve.config import R1ServeConfig
from serve.settings import Settings

log = logging.getLogger(__name__)


def model_path(config: R1ServeConfig) -> Path:
    """The checkpoint directory; the tiny checkpoint is written on first use when none is set."""
    if config.model.path:
        return Path(config.model.path)
    from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint

    root = Settings.from_env().cache_dir
    path = root / f"tiny-fp32-seed{config.model.tiny_seed}"
    if (path / "config.json").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".tiny.lock", "w") as lock:  # several replicas may start at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").exists():
            log.info("writing the tiny checkpoint to %s (first use)", path)
            tmp = root / f".{path.name}.partial"
            write_tiny_checkpoint(tmp, seed=config.model.tiny_seed, dtype="fp32")
            tmp.rename(path)
    return path
