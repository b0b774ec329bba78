"""Backends by name. Each is imported only when chosen, so GPU-only packages stay out of
processes that do not use them."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from cluster.network_env import network_env
from serve.config import R1ServeConfig
from serve.engine.base import Engine
from serve.errors import ConfigError
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


def _reference(config: R1ServeConfig) -> Engine:
    from serve.engine.reference.engine import EngineConfig, ReferenceEngine

    e = config.engine
    engine_config = EngineConfig(
        page_size=e.page_size, kv_pages=e.kv_pages, max_running=e.max_running,
        max_batched_tokens=e.max_batched_tokens, max_model_len=config.model.context_length,
        prefix_cache=e.prefix_cache)
    if e.ep_size == 1 and e.nodes_per_replica == 1:
        return ReferenceEngine.from_checkpoint(model_path(config), engine_config)
    import ray

    from serve.engine.reference.ep_engine import start_ep_engine

    placement = None
    if e.expert_placement:
        from cluster.expert_placement import ExpertPlacement

        try:
            placement = ExpertPlacement.from_json(Path(e.expert_placement).read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"engine.expert_placement: {err}") from err
    ranks_per_node = e.ep_size // e.nodes_per_replica
    # the deploying process's network settings reach the ranks; the config's env overrides
    return start_ep_engine(
        model_path(config), engine_config, ep=e.ep_size, nodes=e.nodes_per_replica,
        placement=placement, placement_group=ray.util.get_current_placement_group(),
        cpus_per_rank=e.devices_per_node / ranks_per_node, env={**network_env(os.environ), **e.env})


def _sglang(config: R1ServeConfig) -> Engine:
    from serve.engine.sglang.engine import build_sglang_engine

    return build_sglang_engine(config)


_BACKENDS = {"reference": _reference, "sglang": _sglang}


def build_engine(config: R1ServeConfig) -> Engine:
    """Start the configured backend's engine in this process."""
    return _BACKENDS[config.model.backend](config)
