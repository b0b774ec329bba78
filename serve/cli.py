"""`r1serve` command line. argparse here only; everything below takes typed objects."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from serve.errors import R1ServeError
from serve.settings import Settings

if TYPE_CHECKING:
    from serve.autoscaling.decision import ScalingDecision


def _tiny_model(ns: argparse.Namespace) -> int:
    if ns.arch == "deepseek-v3":
        from serve.engine.reference.tiny_checkpoint import write_tiny_checkpoint

        path = write_tiny_checkpoint(Path(ns.out), seed=ns.seed, dtype=ns.dtype)
    else:
        from serve.engine.reference.tiny_dense_checkpoint import (
            DENSE_DTYPES,
            write_tiny_dense_checkpoint,
        )

        if ns.dtype not in DENSE_DTYPES:
            raise R1ServeError(f"--dtype {ns.dtype}: a {ns.arch} checkpoint is one of "
                               f"{', '.join(DENSE_DTYPES)} (the distilled models ship bf16)")
        path = write_tiny_dense_checkpoint(Path(ns.out), ns.arch, seed=ns.seed, dtype=ns.dtype)
    print(f"wrote tiny {ns.arch} {ns.dtype} checkpoint to {path}")
    return 0


def _prompt_ids(ns: argparse.Namespace, tokenizer) -> list[int]:
    if ns.prompt_ids is not None:
        try:
            return [int(t) for t in ns.prompt_ids.split(",") if t.strip()]
        except ValueError as e:
            raise R1ServeError(f"--prompt-ids must be comma-separated integers: {e}") from e
    if ns.messages is not None:
        try:
            messages = json.loads(ns.messages)
        except json.JSONDecodeError as e:
            raise R1ServeError(f"--messages is not valid JSON: {e}") from e
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise R1ServeError('--messages must be a JSON list of {"role": ..., "content": ...}')
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return tokenizer.encode(ns.prompt)


def _engine_config(ns: argparse.Namespace):
    from serve.config import R1ServeConfig
    from serve.engine.reference.engine_config import EngineConfig

    # through the config schema, the one place the engine's settings are validated
    engine = {"page_size": ns.page_size, "kv_pages": ns.kv_pages,
              "prefix_cache": not ns.no_prefix_cache, "max_batched_tokens": ns.max_batched_tokens}
    return EngineConfig.from_config(R1ServeConfig.from_dict({"engine": engine},
                                                            source="r1serve generate"))


async def _generate_one(engine, request, stream_text: bool) -> dict:
    token_ids: list[int] = []
    logprobs: list[float] = []
    text: list[str] = []
    finish = None
    usage = None
    async for delta in engine.generate(request):
        token_ids.extend(delta.token_ids)
        text.append(delta.text)
        if delta.logprobs:
            logprobs.extend(lp.logprob for lp in delta.logprobs)
        if stream_text:
            print(delta.text, end="", flush=True)
        finish, usage = delta.finish_reason, delta.usage or usage
    result = {"token_ids": token_ids, "text": "".join(text), "finish_reason": finish,
              "usage": None if usage is None else vars(usage)}
    if request.sampling.logprobs:
        result["logprobs"] = logprobs
    return result


def _start_engine(ns: argparse.Namespace, stack: contextlib.ExitStack):
    from serve.engine.reference.engine import ReferenceEngine

    if ns.ep == 1 and ns.nodes == 1:
        return ReferenceEngine.from_checkpoint(ns.model, _engine_config(ns))
    from serve.engine.reference.architecture import check_parallelism
    from serve.engine.reference.checkpoint import load_model_args

    check_parallelism(load_model_args(ns.model), ns.model, ep_size=ns.ep, nodes=ns.nodes,
                      expert_placement=ns.placement)
    from cluster.expert_placement import ExpertPlacement
    from cluster.local_cluster import local_ray
    from serve.engine.reference.ep_engine import start_ep_engine

    if ns.ep % ns.nodes:
        raise R1ServeError(f"--ep ({ns.ep}) must be a multiple of --nodes ({ns.nodes})")
    placement = None
    if ns.placement:
        placement = ExpertPlacement.from_json(Path(ns.placement).read_text())
    stack.enter_context(local_ray(ns.nodes, cpus_per_node=ns.ep // ns.nodes))
    return start_ep_engine(ns.model, _engine_config(ns), ep=ns.ep, nodes=ns.nodes,
                           placement=placement)


def _generate(ns: argparse.Namespace) -> int:

    with contextlib.ExitStack() as stack:
        engine = _start_engine(ns, stack)
        return _generate_with(ns, engine)


def _generate_with(ns: argparse.Namespace, engine) -> int:
    from serve.engine.base import GenerationRequest, SamplingParams

    try:
        sampling = SamplingParams(
            max_tokens=ns.max_tokens, temperature=ns.temperature, top_p=ns.top_p,
            top_k=ns.top_k, seed=ns.seed, stop=tuple(ns.stop or ()), ignore_eos=ns.ignore_eos,
            logprobs=ns.logprobs)
        request = GenerationRequest(uuid.uuid4().hex, tuple(_prompt_ids(ns, engine.tokenizer)),
                                    sampling)
        result = asyncio.run(_generate_one(engine, request, stream_text=not ns.json))
        if ns.save_expert_counts:  # while the ranks still run
            Path(ns.save_expert_counts).write_text(
                json.dumps({"counts": engine.expert_counts()}))
    finally:
        asyncio.run(engine.shutdown())
    if ns.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"\n[{result['finish_reason']}, {len(result['token_ids'])} tokens]")
    return 0


def _load_config(path: str | None):
    from serve.config import R1ServeConfig

    return R1ServeConfig.from_yaml(path) if path else R1ServeConfig.local_default()


def up_config(config_path: str | None, model: str | None):
    """`r1serve up`'s configuration: `--config` (or the local default) with `--model`'s
    checkpoint. A dense model (a distilled R1) given without a config runs as one process
    (engine.ep_size 1) and is served under its directory's name; one given with a config must
    not ask for expert parallelism, and is refused before Ray starts if it does."""
    from serve.config import R1ServeConfig
    from serve.engine.reference.architecture import check_parallelism
    from serve.engine.reference.checkpoint import load_model_args
    from serve.engine.reference.dense_args import DenseArgs

    config = _load_config(config_path)
    if model is not None:
        data = config.model_dump()
        data["model"]["path"] = model
        if config_path is None and isinstance(load_model_args(model), DenseArgs):
            data["model"]["served_name"] = Path(model).resolve().name
            data["engine"]["ep_size"] = 1
        config = R1ServeConfig.from_dict(data, source=config_path or "--model")
    if config.model.backend == "reference" and config.model.path:
        e = config.engine
        check_parallelism(load_model_args(config.model.path), config.model.path,
                          ep_size=e.ep_size, nodes=e.nodes_per_replica,
                          expert_placement=e.expert_placement)
    return config


def _up(ns: argparse.Namespace) -> int:
    from serve.runner import up

    return up(up_config(ns.config, ns.model))


def _deploy(ns: argparse.Namespace) -> int:
    from serve.runner import deploy

    return deploy(_load_config(ns.config), ns.address)


def _status(ns: argparse.Namespace) -> int:
    from ray import serve

    from serve.ray_connection import connect

    connect(ns.address)
    status = serve.status()
    if not status.applications:
        print("no Serve applications are running")
        return 1
    for name, app in status.applications.items():
        print(f"application {name}: {app.status}")
        for dname, dep in app.deployments.items():
            replicas = ", ".join(f"{n} {s}" for s, n in dep.replica_states.items())
            print(f"  {dname}: {dep.status} ({replicas or 'no replicas'})")
        if "OpenAIIngress" in app.deployments:
            ingress = serve.get_deployment_handle("OpenAIIngress", app_name=name)
            r = ingress.routing_summary.remote().result(timeout_s=30)
            predicted = r.get("predicted_cached_tokens")
            print(f"  routing (one ingress replica): {r['engine_cached_tokens']:.0f} of "
                  f"{r['engine_prompt_tokens']:.0f} prompt tokens served from cache"
                  + ("" if predicted is None else
                     f"; router predicted {predicted:.0f} cached over {r['requests']:.0f} "
                     "routed requests"))
        if "EngineDeployment" in app.deployments:
            print(_scaling_line(name, "EngineDeployment"))
            handle = serve.get_deployment_handle("EngineDeployment", app_name=name)
            seen = {}
            for _ in range(4 * max(1, sum(app.deployments["EngineDeployment"]
                                          .replica_states.values()))):
                replica, stats = handle.stats.remote().result(timeout_s=30)
                seen[replica] = stats
            for replica, s in sorted(seen.items()):
                print(f"  engine {replica}: running {s.running}, waiting {s.waiting}, "
                      f"KV {s.kv_pages_used}/{s.kv_pages_total} pages, prefix hits "
                      f"{s.prefix_cache_hit_tokens}/{s.prompt_tokens} prompt tokens, "
                      f"{s.generation_tokens_per_s:.1f} tok/s")
    return 0


def _scaling_line(app_name: str, deployment: str) -> str:
    """Why the deployment has the size it has, from the token-load policy's `ScalingBoard`."""
    import time

    from serve.autoscaling.scaling_board import ScalingBoard

    try:
        decision = ScalingBoard(app_name, deployment).read()
    except Exception as e:  # status reports what it can
        return f"  scaling: the token-load policy's decision is unreadable: {e}"
    return scaling_status(decision, time.time())


def scaling_status(decision: ScalingDecision | None, now: float) -> str:
    """`r1serve status`'s scaling line for a `ScalingDecision` (or None) read at `now`."""
    from serve.autoscaling.scaling_board import STALE_S

    if decision is None:
        return ("  scaling: no decision of the token-load policy: it has not decided yet, or "
                "the deployment is not autoscaled by it (fixed size, or policy "
                "ongoing_requests)")
    age = now - decision.at
    when = (f"decided {age:.0f} s ago" if age <= STALE_S else
            f"decided {age:.0f} s ago and not renewed since: the policy no longer runs")
    return f"  scaling: {decision.why()} ({when})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r1serve", description="Serve DeepSeek-R1 on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tiny-model", help="write a small random checkpoint in R1's layout, or "
                       "a distilled R1's (qwen2, llama)")
    t.add_argument("out", help="directory to write")
    t.add_argument("--arch", choices=["deepseek-v3", "qwen2", "llama"], default="deepseek-v3",
                   help="deepseek-v3: R1 itself (MLA, MoE); qwen2, llama: the dense distills")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dtype", choices=["fp8", "bf16", "fp32"], default="fp32")
    t.set_defaults(func=_tiny_model)

    g = sub.add_parser("generate", help="generate from a checkpoint with the reference engine")
    g.add_argument("--model", required=True, help="checkpoint directory (Hugging Face layout)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="raw text prompt")
    src.add_argument("--messages", help='chat messages as JSON: [{"role":"user","content":..}]')
    src.add_argument("--prompt-ids", help="token ids, comma-separated, used as given")
    g.add_argument("--max-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", help="stop string (repeatable)")
    g.add_argument("--ignore-eos", action="store_true")
    g.add_argument("--logprobs", action="store_true", help="report each token's logprob")
    g.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    g.add_argument("--page-size", type=int, default=16)
    g.add_argument("--kv-pages", type=int, default=4096)
    g.add_argument("--max-batched-tokens", type=int, default=512)
    g.add_argument("--no-prefix-cache", action="store_true")
    g.add_argument("--ep", type=int, default=1,
                   help="expert-parallel ranks (Ray actors on a local Ray)")
    g.add_argument("--nodes", type=int, default=1,
                   help="simulated Ray nodes the ranks spread over (one bundle per node)")
    g.add_argument("--placement", help="expert placement JSON from `r1serve eplb`")
    g.add_argument("--save-expert-counts", metavar="PATH",
                   help="write the tokens routed to each expert per MoE layer, the input of "
                   "`r1serve eplb --load`")
    g.set_defaults(func=_generate)

    u = sub.add_parser("up", help="serve on a local Ray at http://127.0.0.1:8000/v1")
    u.add_argument("--config", help="YAML config (default: the embedded tiny local default)")
    u.add_argument("--model", help="checkpoint directory to serve (Hugging Face layout), e.g. a "
                   "downloaded DeepSeek-R1-Distill-Qwen-1.5B; overrides model.path")
    u.set_defaults(func=_up)

    d = sub.add_parser("deploy", help="deploy onto an existing Ray cluster (Ray job entrypoint)")
    d.add_argument("config", help="YAML config, e.g. configs/8xh200.yaml")
    d.add_argument("--address", help="Ray address (default: auto)")
    d.set_defaults(func=_deploy)

    st = sub.add_parser("status", help="replicas and their engine stats")
    st.add_argument("--address", help="Ray address (default: auto)")
    st.set_defaults(func=_status)

    from cluster.commands import add_eplb_parser, add_plan_parser

    add_eplb_parser(sub)
    add_plan_parser(sub)

    from serve.engine.sglang.commands import add_sglang_args_parser

    add_sglang_args_parser(sub)

    from serve.k8s.commands import add_k8s_parser

    add_k8s_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ns = _parser().parse_args(argv)
    try:
        return ns.func(ns)
    except R1ServeError as e:
        print(f"r1serve {ns.command}: error: {e.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
