"""Which model a checkpoint's config.json describes — DeepSeek-V3/R1 (MLA, MoE) or a dense
distilled R1 (Qwen2, Llama) — and the module that runs it.

Everything past this point takes the args it returns: the loader, the model runner and the
engine work for both, since both models step over the same `ForwardBatch` and a paged cache
of `kv_cache_dim` values per token per layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from serve.engine.reference.dense_args import DenseArgs, is_dense_config
from serve.engine.reference.model_args import ModelArgs
from serve.errors import ConfigError, UnsupportedConfigError

AnyModelArgs = ModelArgs | DenseArgs


def args_from_dict(cfg: dict[str, Any], source: str = "config.json") -> AnyModelArgs:
    """A parsed config.json as the args of the architecture it names (model_type)."""
    if is_dense_config(cfg):
        return DenseArgs.from_dict(cfg, source)
    return ModelArgs.from_dict(cfg, source)


def args_from_file(path: str | Path) -> AnyModelArgs:
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UnsupportedConfigError(f"{path}: cannot read config: {e}") from e
    return args_from_dict(cfg, str(path))


def build_model(args: AnyModelArgs) -> nn.Module:
    """The whole model (every expert) for `args`, on the current default device."""
    if isinstance(args, DenseArgs):
        from serve.engine.reference.dense_model import DenseTransformer

        return DenseTransformer(args)
    from serve.engine.reference.model import Transformer

    return Transformer(args)


def check_parallelism(args: AnyModelArgs, source: str, *, ep_size: int = 1,
                      nodes: int = 1, expert_placement: object | None = None) -> None:
    """Refuse expert-parallel settings for a dense model, naming the setting: a dense model has
    no experts to split, and one instance runs in one process."""
    if not isinstance(args, DenseArgs):
        return
    what = f"{source} is a dense {args.architecture} model (no experts)"
    if ep_size != 1:
        raise ConfigError(f"engine.ep_size={ep_size} (--ep): {what}; expert parallelism does "
                          "not apply, set engine.ep_size to 1")
    if nodes != 1:
        raise ConfigError(f"engine.nodes_per_replica={nodes} (--nodes): {what}; one instance "
                          "runs on one node, set engine.nodes_per_replica to 1")
    if expert_placement:
        raise ConfigError(f"engine.expert_placement={expert_placement!r} (--placement): {what}; "
                          "remove the expert placement")
