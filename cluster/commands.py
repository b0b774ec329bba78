"""`r1serve eplb` and `r1serve plan`: argparse front ends for EPLB and capacity planning.

serve/cli.py calls `add_eplb_parser(sub)` and `add_plan_parser(sub)`; each sets
`func` to a handler that takes the parsed namespace and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cluster.capacity import GIB, GPUS, KV_DTYPE_BYTES, CapacityPlan, Layout, plan
from cluster.dense_capacity import is_dense_config, plan_dense
from cluster.eplb import (
    POLICIES,
    layer_max_mean_ratios,
    max_mean_ratio,
    rebalance,
    synthetic_counts,
)
from cluster.expert_placement import ExpertPlacement, contiguous

_DEFAULT_CONFIG = "data/deepseek_r1_config.json"
_DISTILL_SHAPES = "data/distill_shapes.json"
_COUNTS_HELP = (
    'JSON file of measured expert loads: {"counts": [[c_0, ..., c_{E-1}], ...]}, one list per '
    "MoE layer (R1: 58 lists of 256), c_e = tokens routed to logical expert e in that layer")


def add_eplb_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `eplb`: compute an expert placement with redundant experts from a load profile."""
    p = subparsers.add_parser(
        "eplb", help="place experts (with redundant replicas) over EP ranks to balance load",
        description="Compute an expert-parallel placement from per-expert token counts, write "
                    "it as JSON, and compare its per-rank max/mean load with the contiguous "
                    "placement.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--load", type=Path, metavar="COUNTS_JSON", help=_COUNTS_HELP)
    src.add_argument("--synthetic-layers", type=int, metavar="N",
                     help="instead of --load, generate a seeded Zipf-like load for N MoE layers")
    p.add_argument("--synthetic-experts", type=int, default=256,
                   help="experts per layer of the synthetic load (default 256)")
    p.add_argument("--synthetic-skew", type=float, default=1.0,
                   help="Zipf exponent of the synthetic load; 0 is uniform (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic load (default 0)")
    p.add_argument("--ep", type=int, required=True, help="expert-parallel size (ranks)")
    p.add_argument("--nodes", type=int, required=True, help="nodes the EP ranks span")
    p.add_argument("--redundant", type=int, default=0,
                   help="redundant expert slots per layer; experts + redundant must be a "
                        "multiple of --ep (default 0)")
    p.add_argument("--groups", type=int, default=8,
                   help="expert groups of the router, config.json n_group (default 8)")
    p.add_argument("--policy", choices=POLICIES, default="auto",
                   help="hierarchical: groups pinned to nodes; global: one pool; auto: per "
                        "layer the better of the two (default)")
    p.add_argument("--out", type=Path, help="write the placement JSON here")
    p.set_defaults(func=_eplb)
    return p


def add_plan_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `plan`: will R1 fit on this cluster layout, and how much KV cache is left?"""
    p = subparsers.add_parser(
        "plan", help="capacity plan: does the model fit, and how many requests at a context",
        description="Count the model's weights from config.json, split them over the layout, "
                    "and report the KV cache left. Exits 1 when the layout does not fit (and "
                    "names the smallest node count that would).")
    p.add_argument("--gpu", choices=sorted(GPUS), required=True)
    p.add_argument("--gpus-per-node", type=int, default=8, help="(default 8)")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--context", type=int, default=32_768,
                   help="tokens per request, prompt + output (default 32768)")
    p.add_argument("--kv-dtype", choices=sorted(KV_DTYPE_BYTES), default="bf16")
    p.add_argument("--ep", type=int, default=None, help="expert-parallel size (default all GPUs)")
    p.add_argument("--redundant", type=int, default=0,
                   help="EPLB redundant expert slots per MoE layer (default 0)")
    p.add_argument("--dp-attention", action="store_true",
                   help="data-parallel attention: each GPU holds attention whole and the KV of "
                        "its own requests (default: attention tensor-parallel over all GPUs)")
    p.add_argument("--mtp", action="store_true",
                   help="also load the MTP layer(s) for speculative decoding")
    p.add_argument("--memory-fraction", type=float, default=0.9,
                   help="fraction of GPU memory for weights + KV cache, the rest kept for "
                        "activations and CUDA graphs (SGLang --mem-fraction-static; default 0.9)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--config", type=Path, default=None,
                       help="model config.json (default: DeepSeek-R1's, shipped with r1serve); "
                            "a Qwen2 or Llama config is planned as a dense model")
    model.add_argument("--model", choices=sorted(_distill_shapes()),
                       help="a distilled R1 model, by its shape shipped with r1serve: dense, "
                            "tensor parallel on one node (--gpus-per-node GPUs, --nodes 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_plan)
    return p


def _eplb(ns: argparse.Namespace) -> int:
    try:
        counts = _read_counts(ns.load) if ns.load is not None else synthetic_counts(
            ns.synthetic_layers, ns.synthetic_experts, seed=ns.seed, skew=ns.synthetic_skew)
        placement = rebalance(counts, ns.ep, ns.nodes, ns.redundant, ns.groups,
                              policy=ns.policy)
        if ns.out is not None:
            ns.out.write_text(placement.to_json())
    except (ValueError, OSError) as e:
        return _fail("eplb", e)
    layers, experts = counts.shape
    print(f"{layers} MoE layers, {experts} experts + {ns.redundant} redundant over {ns.ep} "
          f"ranks on {ns.nodes} nodes ({placement.slots_per_rank} slots per rank), "
          f"policy {ns.policy}")
    print(f"{'max/mean rank load':<20} {'mean over layers':>16} {'worst layer':>12}")
    print(_load_row("eplb", placement, counts))
    if experts % ns.ep == 0:
        print(_load_row("contiguous", contiguous(experts, ns.ep, layers), counts))
    else:
        print(f"{'contiguous':<20} {'n/a':>16}  ({experts} experts do not divide over {ns.ep})")
    if ns.out is not None:
        print(f"wrote {ns.out}")
    return 0


def _read_counts(path: Path) -> np.ndarray:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(doc, dict) or "counts" not in doc:
        raise ValueError(f'{path}: expected {{"counts": [[...per expert...] per layer]}}')
    rows = doc["counts"]
    if (not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows)
            or len({len(r) for r in rows}) != 1):
        raise ValueError(f"{path}: counts must be a non-empty list of equal-length lists "
                         f"(one per MoE layer)")
    try:
        return np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: counts must be numbers: {e}") from e


def _load_row(name: str, placement: ExpertPlacement, counts: np.ndarray) -> str:
    worst = layer_max_mean_ratios(placement, counts).max()
    return f"{name:<20} {max_mean_ratio(placement, counts):>16.3f} {worst:>12.3f}"


def _plan(ns: argparse.Namespace) -> int:
    try:
        config = _read_config(ns.config, ns.model)
        layout = Layout(gpus_per_node=ns.gpus_per_node, nodes=ns.nodes, context=ns.context,
                        kv_dtype=ns.kv_dtype, ep=ns.ep, dp_attention=ns.dp_attention,
                        redundant_experts=ns.redundant, memory_fraction=ns.memory_fraction,
                        mtp=ns.mtp)
        result = (plan_dense if is_dense_config(config) else plan)(config, ns.gpu, layout)
    except (ValueError, OSError) as e:
        return _fail("plan", e)
    if ns.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_plan_table(result))
    return 0 if result.fits else 1


def _distill_shapes() -> dict[str, dict[str, Any]]:
    """distill-qwen-32b -> the sizing fields of DeepSeek-R1-Distill-Qwen-32B's config.json."""
    doc = json.loads(resources.files("cluster").joinpath(_DISTILL_SHAPES).read_text())
    return {name.lower().removeprefix("deepseek-r1-"): shape for name, shape in doc.items()
            if not name.startswith("_")}


def _read_config(path: Path | None, model: str | None = None) -> dict[str, Any]:
    if model is not None:
        return _distill_shapes()[model]
    source = resources.files("cluster").joinpath(_DEFAULT_CONFIG) if path is None else path
    try:
        config = json.loads(source.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{source}: expected a config.json object")
    return config


def _describe(layout: Layout, dense: bool = False) -> str:
    if dense:
        gpus = layout.num_gpus
        return f"{gpus} GPU{'s' if gpus > 1 else ''} of one node, tensor parallel {gpus} (dense)"
    attention = "DP attention" if layout.dp_attention else f"TP{layout.num_gpus} attention"
    return (f"{layout.nodes} node(s) x {layout.gpus_per_node} GPUs = {layout.num_gpus} GPUs, "
            f"EP{layout.ep_size}, {attention}")


def _plan_table(p: CapacityPlan) -> str:
    layout = p.layout
    rows = [
        ("fits", "yes" if p.fits else "no"),
        ("parameters", f"{p.parameters:,} ({p.parameters / 1e9:.1f} B)"),
        ("weights, whole model", _bytes(p.weight_bytes_total)),
        ("weight bytes per GPU", _bytes(p.weight_bytes_per_gpu)),
        ("usable bytes per GPU", f"{_bytes(p.usable_bytes_per_gpu)} "
                                 f"({layout.memory_fraction:.0%} of memory)"),
        ("KV bytes per token", f"{p.kv_bytes_per_token:,} ({layout.kv_dtype})"),
        ("KV bytes per GPU", _bytes(p.kv_bytes_per_gpu)),
        ("KV-cache tokens", f"{p.kv_cache_tokens:,}"),
        ("max concurrent requests", f"{p.max_concurrent_requests:,} at {layout.context:,} "
                                    f"tokens each"),
    ]
    lines = [f"{p.gpu.description} ({p.gpu.name}): {_describe(layout, p.dense)}"]
    lines += [f"  {name:<25} {value}" for name, value in rows]
    if p.reason:
        lines.append(f"does not fit: {p.reason}")
    if p.smallest_fitting is not None and p.dense:
        lines.append(f"smallest layout that fits: {_describe(p.smallest_fitting, True)} "
                     f"(--gpus-per-node {p.smallest_fitting.gpus_per_node})")
    elif p.smallest_fitting is not None:
        lines.append(f"smallest layout that fits: {_describe(p.smallest_fitting)} "
                     f"(--nodes {p.smallest_fitting.nodes})")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    return f"{n:,} ({n / GIB:.1f} GiB)"


def _fail(command: str, error: Exception) -> int:
    print(f"r1serve {command}: error: {error}", file=sys.stderr)
    return 2
