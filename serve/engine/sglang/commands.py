"""`r1serve sglang-args`: the SGLang command lines of a profile, for operators who run SGLang by
hand (outside Ray Serve) or want to see what the engine deployment will start.

serve/cli.py calls `add_sglang_args_parser(sub)`; it sets `func` to a handler
that takes the parsed namespace and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys

from serve.engine.sglang.profiles import PROFILES

DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1"


def add_sglang_args_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `sglang-args`: print `python -m sglang.launch_server` lines, one per node."""
    profiles = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
    p = subparsers.add_parser(
        "sglang-args", help="print the SGLang launch command of a profile, one line per node",
        description="Print the `python -m sglang.launch_server` command line of each node of "
                    "one R1 instance, generated exactly as the engine deployment generates "
                    f"its SGLang arguments. Profiles: {profiles}.")
    p.add_argument("--profile", choices=sorted(PROFILES), required=True,
                   help="hardware layout and tuning")
    p.add_argument("--config", help="r1serve YAML config: model.path, model.context_length, "
                                    "model.served_name and engine.backend_args apply")
    p.add_argument("--dist-init-addr", metavar="HOST:PORT",
                   help="rank 0's address for multi-node rendezvous (default: $HEAD_IP:5000, "
                        "expanded by your shell)")
    p.add_argument("--host", default="0.0.0.0",
                   help="address SGLang's HTTP server binds on node 0 (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=30000, help="SGLang's HTTP port (default 30000)")
    p.set_defaults(func=_sglang_args)
    return p


def _sglang_args(ns: argparse.Namespace) -> int:
    from serve.config import R1ServeConfig
    from serve.engine.sglang.profiles import get_profile
    from serve.engine.sglang.server_args import build_server_args

    config = R1ServeConfig.from_yaml(ns.config) if ns.config else R1ServeConfig()
    profile = get_profile(ns.profile)
    args = build_server_args(config, profile,
                             model_path=config.model.path or profile.model or DEFAULT_MODEL)
    lines = args.launch_commands(ns.dist_init_addr, extra={"host": ns.host, "port": ns.port})
    e = config.engine
    if ns.config and (e.nodes_per_replica, e.devices_per_node) != (
            profile.layout.nnodes, profile.layout.gpus_per_node):
        print(f"# note: {ns.config} asks for {e.nodes_per_replica} node(s) x "
              f"{e.devices_per_node} GPU(s); profile {profile.name} uses "
              f"{profile.layout.nnodes} x {profile.layout.gpus_per_node}", file=sys.stderr)
    for rank, line in enumerate(lines):
        if len(lines) > 1:
            print(f"# node {rank} of {len(lines)}" + (" (rank 0: serves HTTP)" if rank == 0
                                                      else ""))
        print(line)
    return 0
