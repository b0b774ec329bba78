"""Named SGLang launch profiles for DeepSeek-R1 and its distilled models: a parallel layout
plus tuning, as data.

A profile never holds model paths or ports; those come from the r1serve config. Tuning values
follow SGLang's published R1 recipes for each GPU, sized for R1's FP8 weights (~640 GiB):
- h200x8: the whole model on one 8xH200 node (141 GB each), plain tensor parallelism.
- h100x16: two 8xH100 nodes (80 GB each), tensor parallelism across both over the network.
- h800x32-wide-ep: four 8xH800 nodes, attention data-parallel on every GPU (each GPU owns its
  requests and KV cache) and DeepEP all-to-all for the experts, with EPLB keeping 32 redundant
  experts so that hot experts are replicated. Built for high-concurrency decode.

The distilled R1 models are dense (Qwen2.5 and Llama 3, bf16) and need no expert parallelism:
each `distill-*` profile is plain tensor parallelism on one node, sized for its model's bf16
weights plus KV room, and more throughput comes from more instances (Ray Serve replicas).
- distill-qwen-1.5b, -7b, distill-llama-8b, distill-qwen-14b: one 80 GB GPU (3.5 to 30 GB).
- distill-qwen-32b: two 80 GB GPUs, 33 GB of its 66 GB on each (one H200 holds it too).
- distill-llama-70b: four H200s (141 GB of weights, 35 GB each); -h100x8: eight H100s.

Every profile turns metrics on (the router and autoscaler read load from SGLang), leaves
SGLang's reasoning parser off (the ingress splits <think> itself), and raises the
torch.distributed timeout: the first NCCL collective waits for every rank to load weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from serve.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    """How one model instance spreads over GPUs."""

    nnodes: int
    gpus_per_node: int
    attn_dp: bool = False  # attention data-parallel over all TP ranks
    ep: bool = False  # experts sharded over all TP ranks via DeepEP all-to-all

    @property
    def tp_size(self) -> int:
        return self.nnodes * self.gpus_per_node

    @property
    def world_size(self) -> int:
        """GPUs, hence SGLang scheduler processes (Ray actors), of one instance."""
        return self.tp_size

    @property
    def kv_caches(self) -> int:
        """Separate KV caches of one instance: one per attention-DP rank, else one."""
        return self.tp_size if self.attn_dp else 1


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(d)


# Arguments every profile and every derived layout starts from.
BASE_ARGS: Mapping[str, Any] = _frozen({
    "enable_metrics": True,
    "dist_timeout": 1800,  # seconds; SGLang's default is torch's 600 s
})


@dataclass(frozen=True)
class Profile:
    """A layout and the ServerArgs tuning that goes with it."""

    name: str
    gpu: str
    description: str
    layout: Layout
    tuning: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    # The checkpoint the profile is sized for, as a Hugging Face repo id: what
    # `r1serve sglang-args` launches when no config names a model. None: DeepSeek-R1.
    model: str | None = None


# Dense distilled models on one node: bf16 weights, tensor parallelism only.
_DISTILL_TUNING = _frozen({
    "mem_fraction_static": 0.88,
    "chunked_prefill_size": 8192,
    "cuda_graph_max_bs_decode": 256,
})


def _distill(size: str, gpu: str, gpus: int, note: str, name: str | None = None) -> Profile:
    family = "Llama" if size in ("8b", "70b") else "Qwen"
    model = f"deepseek-ai/DeepSeek-R1-Distill-{family}-{size.upper()}"
    return Profile(
        name=name or f"distill-{family.lower()}-{size}", gpu=gpu,
        layout=Layout(nnodes=1, gpus_per_node=gpus), tuning=_DISTILL_TUNING, model=model,
        description=f"{model.split('/')[1]} on {gpus}x{gpu}" + (
            f", tensor parallel {gpus}" if gpus > 1 else "") + f" ({note})")


PROFILES: Mapping[str, Profile] = _frozen({p.name: p for p in (
    Profile(
        name="h200x8", gpu="H200", layout=Layout(nnodes=1, gpus_per_node=8),
        description="R1 on one 8xH200 node, tensor parallel 8",
        tuning=_frozen({
            "mem_fraction_static": 0.88,
            "chunked_prefill_size": 8192,
            "cuda_graph_max_bs_decode": 128,
        })),
    Profile(
        name="h100x16", gpu="H100", layout=Layout(nnodes=2, gpus_per_node=8),
        description="R1 on two 8xH100 nodes, tensor parallel 16",
        tuning=_frozen({
            "mem_fraction_static": 0.85,
            "chunked_prefill_size": 4096,
            "cuda_graph_max_bs_decode": 64,
            "dist_timeout": 3600,
        })),
    Profile(
        name="h800x32-wide-ep", gpu="H800",
        layout=Layout(nnodes=4, gpus_per_node=8, attn_dp=True, ep=True),
        description="R1 on four 8xH800 nodes: attention data parallel 32, DeepEP expert "
                    "parallel 32, EPLB with 32 redundant experts",
        tuning=_frozen({
            "mem_fraction_static": 0.8,
            "chunked_prefill_size": 4096,  # per DP rank
            "cuda_graph_max_bs_decode": 128,  # per DP rank
            "dist_timeout": 3600,
            "deepep_mode": "auto",  # normal kernels for prefill, low-latency for decode
            "enable_eplb": True,
            "ep_num_redundant_experts": 32,
            "enable_dp_lm_head": True,
            "moe_dense_tp_size": 1,  # dense MLPs data-parallel too, as attention is
            "enable_metrics_for_all_schedulers": True,  # one load series per DP rank
        })),
    _distill("1.5b", "H100", 1, "bf16 weights 3.5 GB"),
    _distill("7b", "H100", 1, "bf16 weights 15 GB"),
    _distill("8b", "H100", 1, "bf16 weights 16 GB"),
    _distill("14b", "H100", 1, "bf16 weights 30 GB"),
    _distill("32b", "H100", 2, "bf16 weights 66 GB"),
    _distill("70b", "H200", 4, "bf16 weights 141 GB"),
    _distill("70b", "H100", 8, "bf16 weights 141 GB", name="distill-llama-70b-h100x8"),
)})


def get_profile(name: str) -> Profile:
    """The profile called `name`, or `ConfigError` listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown SGLang profile {name!r}; known: "
                          f"{', '.join(PROFILES)}") from None


def profile_for(layout: Layout) -> Profile | None:
    """The R1 profile whose layout is exactly `layout`, if any. A distilled model's profile
    applies only by name (`engine.backend_args.profile`): a layout does not say the model."""
    return next((p for p in PROFILES.values() if p.layout == layout and p.model is None), None)
