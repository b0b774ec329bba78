"""`SGLangBackend`: SGLang's `RayEngine` in the replica's process, its scheduler actors in the
replica's placement group (see `placement.py`)."""

from __future__ import annotations

import os
from typing import Any

from serve.config import R1ServeConfig
from serve.engine.backend import Backend
from serve.engine.base import Engine
from serve.engine.sglang.placement import REPLICA_CPUS, plan_ray_launch


class SGLangBackend(Backend):
    def build_engine(self, config: R1ServeConfig) -> Engine:
        from serve.engine.sglang.engine import build_sglang_engine

        return build_sglang_engine(config)

    def replica_options(self, config: R1ServeConfig) -> dict[str, Any]:
        # SGLang's scheduler actors inherit the replica's environment (NCCL/GLOO interface
        # settings, HF_TOKEN, the CUDA-visibility switch SGLang's own launcher sets).
        plan = plan_ray_launch(config, {**os.environ, **config.engine.env})
        return {"placement_group_bundles": [dict(b) for b in plan.bundles],
                "placement_group_strategy": plan.strategy,
                "ray_actor_options": {"num_cpus": REPLICA_CPUS,
                                      "runtime_env": plan.runtime_env()}}
