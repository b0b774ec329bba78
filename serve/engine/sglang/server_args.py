"""SGLang's ServerArgs generated from the r1serve config: the one place they are made.

Order of precedence, last wins: `BASE_ARGS`, the layout (tp/nnodes/attention DP/EP, from the
config or a named profile), the model section, the profile's tuning, and finally the user's
`engine.backend_args`. Every key is checked against the pinned release's parser table, so an
unknown, removed or deprecated flag fails at config time with the knob to turn, not at startup
on 32 GPUs.

The same `SGLangServerArgs` feeds `RayEngine(**kwargs)` inside a replica and the
`python -m sglang.launch_server` command lines `r1serve sglang-args` prints for operators.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from serve.config import R1ServeConfig
from serve.engine.sglang.flags import FlagTable
from serve.engine.sglang.profiles import BASE_ARGS, Layout, Profile, get_profile, profile_for
from serve.errors import ConfigError

# ServerArgs fields r1serve sets from its own config or at launch. Overriding one in
# backend_args would break placement, routing or the stream adapter, so each names its knob.
OWNED: Mapping[str, str] = MappingProxyType({
    "model_path": "set model.path",
    "tp_size": "set engine.nodes_per_replica and engine.devices_per_node (tp = their product)",
    "nnodes": "set engine.nodes_per_replica",
    "node_rank": "r1serve sets it per node",
    "dist_init_addr": "r1serve sets it at launch (`r1serve sglang-args --dist-init-addr`)",
    "attn_dp_size": "set engine.dp_attention: true (attention DP over every GPU)",
    "ep_size": "set engine.ep_size to 1 or to the GPU count of one instance",
    "dp_size": "r1serve scales model instances as Ray Serve replicas (autoscaling.*)",
    "context_length": "set model.context_length",
    "served_model_name": "set model.served_name",
    "max_running_requests": "set engine.max_running",
    "disable_radix_cache": "set engine.prefix_cache",
    "reasoning_parser": "r1serve splits <think> reasoning itself; SGLang's parser stays off",
    "skip_tokenizer_init": "the SGLang backend needs SGLang's detokenizer for streamed text",
    "incremental_streaming_output": "the stream adapter consumes SGLang's cumulative output",
    "use_ray": "the engine deployment always runs SGLang through Ray",
    "kv_events_config": "r1serve subscribes to SGLang's KV events itself, for the router's "
                        "cache digest (engine.prefix_cache)",
})

# The one backend_args key that is not a ServerArgs field: it names a profile (profiles.py).
PROFILE_KEY = "profile"
DEFAULT_DIST_PORT = 5000
_SAFE_WORD = re.compile(r"[\w@%+=:,./$-]+")  # `$` kept so "$HEAD_IP" expands in a shell


@dataclass(frozen=True)
class SGLangServerArgs:
    """ServerArgs field -> value for one model instance, in the order they were decided."""

    args: Mapping[str, Any]
    layout: Layout
    profile: str | None  # the named profile whose tuning applied, if any

    def engine_kwargs(self, dist_init_addr: str | None = None,
                      kv_events_endpoint: str | None = None) -> dict[str, Any]:
        """Keyword arguments of `sglang.srt.ray.RayEngine` (rank 0 runs in this process).

        With `kv_events_endpoint` ("tcp://HOST:PORT", bound by the replica), each KV cache's
        publisher connects to PORT + its attention-DP rank and sends its KV events there."""
        kwargs = dict(self.args)
        if dist_init_addr is not None:
            kwargs["dist_init_addr"] = dist_init_addr
        if kv_events_endpoint is not None:
            kwargs["kv_events_config"] = json.dumps(
                {"publisher": "zmq", "endpoint": kv_events_endpoint, "bind": False})
        return kwargs

    def launch_argv(self, node_rank: int = 0, dist_init_addr: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> list[str]:
        """`python -m sglang.launch_server` arguments for one node of the instance."""
        table = FlagTable.pinned()
        argv = ["python", "-m", "sglang.launch_server"]
        args = dict(self.args)
        if self.layout.nnodes > 1:
            if dist_init_addr is None:
                raise ConfigError("a multi-node launch needs --dist-init-addr HOST:PORT")
            args.update(node_rank=node_rank, dist_init_addr=dist_init_addr)
        args.update(extra or {})
        for dest, value in args.items():
            argv += table.argv(dest, value)
        return argv

    def launch_commands(self, dist_init_addr: str | None = None,
                        extra: Mapping[str, Any] | None = None) -> list[str]:
        """One shell command line per node, node rank 0 first."""
        addr = dist_init_addr or f"$HEAD_IP:{DEFAULT_DIST_PORT}"
        return [" ".join(_shell_word(w) for w in self.launch_argv(rank, addr, extra))
                for rank in range(self.layout.nnodes)]


def layout_from_config(config: R1ServeConfig) -> Layout:
    """The parallel layout the engine section asks for."""
    e = config.engine
    layout = Layout(nnodes=e.nodes_per_replica, gpus_per_node=e.devices_per_node,
                    attn_dp=e.dp_attention, ep=e.ep_size > 1)
    if e.ep_size not in (1, layout.tp_size):
        raise ConfigError(
            f"engine.ep_size={e.ep_size}: SGLang's DeepEP expert parallelism spans all "
            f"{layout.tp_size} GPUs of an instance (nodes_per_replica x devices_per_node); "
            f"set engine.ep_size to 1 or {layout.tp_size}", param="engine.ep_size")
    return layout


def build_server_args(config: R1ServeConfig, profile: Profile | None = None, *,
                      model_path: str | None = None) -> SGLangServerArgs:
    """The ServerArgs of one instance.

    Without `profile` the layout comes from `config.engine`, tuned by the profile named in
    `engine.backend_args.profile` (whose layout must match) or else by the profile with exactly
    that layout, if one exists. With `profile`, its layout wins over the config's
    (`r1serve sglang-args --profile`); the model section and backend_args still apply.
    """
    backend_args = dict(config.engine.backend_args)
    named = backend_args.pop(PROFILE_KEY, None)
    if profile is not None:
        layout = profile.layout
    elif named is not None:
        profile, layout = get_profile(str(named)), layout_from_config(config)
        if profile.layout != layout:
            want = profile.layout
            raise ConfigError(
                f"engine.backend_args.profile={named!r} is laid out as nodes_per_replica="
                f"{want.nnodes}, devices_per_node={want.gpus_per_node}, dp_attention="
                f"{str(want.attn_dp).lower()}, ep_size={want.tp_size if want.ep else 1}; set "
                "engine.* to match or drop the profile", param="engine.backend_args.profile")
    else:
        layout = layout_from_config(config)
        profile = profile_for(layout)
    path = model_path or config.model.path
    if not path:
        raise ConfigError("model.path must be set for model.backend='sglang': a checkpoint "
                          "directory or a Hugging Face repo id such as deepseek-ai/DeepSeek-R1",
                          param="model.path")
    args: dict[str, Any] = {"model_path": path, **_layout_args(layout)}
    args.update(BASE_ARGS)
    args.update(served_model_name=config.model.served_name,
                context_length=config.model.context_length)
    if "max_running" in config.engine.model_fields_set:
        # Only when asked for: the schema's default (64) is sized for the reference engine,
        # and SGLang sizes its own from KV-cache memory.
        args["max_running_requests"] = config.engine.max_running
    if not config.engine.prefix_cache:
        args["disable_radix_cache"] = True
    if profile is not None:
        args.update(profile.tuning)
    table = FlagTable.pinned()
    for dest, value in args.items():  # our own choices must be current flags too
        table.check(dest, value, where="r1serve's generated SGLang arguments")
    args.update(validate_backend_args(backend_args, table))
    return SGLangServerArgs(MappingProxyType(args), layout,
                            None if profile is None else profile.name)


def validate_backend_args(backend_args: Mapping[str, Any],
                          table: FlagTable | None = None) -> dict[str, Any]:
    """engine.backend_args checked key by key; `ConfigError` names the first bad one."""
    table = table or FlagTable.pinned()
    where = "engine.backend_args"
    for dest, value in backend_args.items():
        if dest in OWNED:
            raise ConfigError(f"{where}.{dest}: r1serve sets this one; {OWNED[dest]}",
                              param=dest)
        table.check(dest, value, where=where)
    return dict(backend_args)


def _layout_args(layout: Layout) -> dict[str, Any]:
    args: dict[str, Any] = {"tp_size": layout.tp_size, "nnodes": layout.nnodes}
    if layout.attn_dp:
        args["attn_dp_size"] = layout.tp_size
    if layout.ep:
        # DeepEP shards experts over the whole TP group; SGLang forces ep_size = tp_size with
        # it, and saying so keeps the parsed arguments self-explanatory.
        args.update(ep_size=layout.tp_size, moe_a2a_backend="deepep")
    return args


def _shell_word(word: str) -> str:
    return word if _SAFE_WORD.fullmatch(word) else shlex.quote(word)
