"""Generated SGLang arguments: checked by SGLang 0.5.23's own parser, and by ours."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from serve.config import R1ServeConfig
from serve.engine.sglang.flags import FlagTable
from serve.engine.sglang.profiles import PROFILES, Layout, get_profile
from serve.engine.sglang.server_args import OWNED, build_server_args, validate_backend_args
from serve.errors import ConfigError

ADDR = "10.0.0.1:5000"


def _config(**engine) -> R1ServeConfig:
    return R1ServeConfig.from_dict({"model": {"path": "/models/DeepSeek-R1", "backend": "sglang"},
                                    "engine": engine})


@pytest.fixture(scope="module")
def sglang_server_args():
    try:
        from sglang.srt.server_args import ServerArgs
    except ImportError as e:
        pytest.skip(f"sglang 0.5.23 is not importable ({e}); install its parser with "
                    "`bash scripts/install_test_sglang.sh .venv`")
    return ServerArgs


def _parse(server_args_cls, argv: list[str]):
    parser = argparse.ArgumentParser()
    server_args_cls.add_cli_args(parser)
    assert argv[:3] == ["python", "-m", "sglang.launch_server"]
    # from_cli_args builds the record without resolving it: no model config is loaded.
    return server_args_cls.from_cli_args(parser.parse_args(argv[3:]))


EXPECTED = {
    "h200x8": dict(tp_size=8, nnodes=1, attn_dp_size=1, ep_size=1, moe_a2a_backend="none",
                   enable_eplb=False, ep_num_redundant_experts=0, dist_timeout=1800),
    "h100x16": dict(tp_size=16, nnodes=2, attn_dp_size=1, ep_size=1, moe_a2a_backend="none",
                    enable_eplb=False, ep_num_redundant_experts=0, dist_timeout=3600),
    "h800x32-wide-ep": dict(tp_size=32, nnodes=4, attn_dp_size=32, ep_size=32,
                            moe_a2a_backend="deepep", enable_eplb=True,
                            ep_num_redundant_experts=32, dist_timeout=3600),
}
# The distilled models: dense, tensor parallel on one node, no expert parallelism.
DISTILL_TP = {"distill-qwen-1.5b": 1, "distill-qwen-7b": 1, "distill-llama-8b": 1,
              "distill-qwen-14b": 1, "distill-qwen-32b": 2, "distill-llama-70b": 4,
              "distill-llama-70b-h100x8": 8}
EXPECTED.update({name: dict(tp_size=tp, nnodes=1, attn_dp_size=1, ep_size=1,
                            moe_a2a_backend="none", enable_eplb=False,
                            ep_num_redundant_experts=0, dist_timeout=1800)
                 for name, tp in DISTILL_TP.items()})


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_parses_with_sglangs_parser(sglang_server_args, name: str) -> None:
    args = build_server_args(_config(), get_profile(name))
    commands = args.launch_commands(ADDR)
    assert len(commands) == PROFILES[name].layout.nnodes
    for rank, line in enumerate(commands):
        parsed = _parse(sglang_server_args, shlex.split(line))
        for field, want in EXPECTED[name].items():
            assert getattr(parsed, field) == want, (name, field)
        assert parsed.node_rank == rank
        assert parsed.dist_init_addr == (ADDR if parsed.nnodes > 1 else None)
        assert parsed.model_path == "/models/DeepSeek-R1"
        assert parsed.enable_metrics is True
        assert parsed.reasoning_parser is None  # r1serve splits reasoning itself
        assert parsed.chunked_prefill_size > 0 and 0 < parsed.mem_fraction_static < 1
        assert parsed.cuda_graph_max_bs_decode > 0
        assert parsed.context_length == 32768


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_engine_kwargs_build_sglangs_server_args(sglang_server_args, name: str) -> None:
    """What RayEngine(**kwargs) receives is accepted by ServerArgs as well."""
    args = build_server_args(_config(), get_profile(name))
    record = sglang_server_args(**args.engine_kwargs(ADDR))
    assert record.tp_size == PROFILES[name].layout.tp_size
    assert record.dist_init_addr == ADDR


def test_kv_events_endpoint_reaches_sglangs_own_config(sglang_server_args) -> None:
    from sglang.srt.disaggregation.kv_events import KVEventsConfig

    args = build_server_args(_config(), get_profile("h100x16"))
    record = sglang_server_args(**args.engine_kwargs(ADDR, "tcp://10.0.0.9:41000"))
    config = KVEventsConfig.from_cli(record.kv_events_config)
    assert (config.publisher, config.endpoint, config.bind) == ("zmq", "tcp://10.0.0.9:41000",
                                                                False)
    with pytest.raises(ConfigError, match="kv_events_config: r1serve sets this one"):
        validate_backend_args({"kv_events_config": "{}"})


def test_pinned_flag_table_matches_installed_parser(sglang_server_args) -> None:
    parser = argparse.ArgumentParser()
    sglang_server_args.add_cli_args(parser)
    live: dict[str, set[str]] = {}
    for action in parser._actions:
        live.setdefault(action.dest, set()).update(action.option_strings)
    table = FlagTable.pinned()
    assert table.dests == set(live) - {"help", "config"}
    for dest in table.dests:
        assert table[dest].flag in live[dest], dest


def test_layout_comes_from_config_and_matching_profile_tunes_it() -> None:
    args = build_server_args(_config(nodes_per_replica=4, devices_per_node=8, ep_size=32,
                                     dp_attention=True))
    assert args.profile == "h800x32-wide-ep"
    assert args.layout == Layout(4, 8, attn_dp=True, ep=True)
    assert args.args["enable_eplb"] is True

    custom = build_server_args(_config(nodes_per_replica=1, devices_per_node=4))
    assert custom.profile is None
    assert custom.args["tp_size"] == 4 and "mem_fraction_static" not in custom.args


def test_backend_args_merge_last() -> None:
    args = build_server_args(_config(backend_args={"mem_fraction_static": 0.7,
                                                   "kv_cache_dtype": "fp8_e4m3"}),
                             get_profile("h200x8"))
    assert args.args["mem_fraction_static"] == 0.7
    assert args.args["kv_cache_dtype"] == "fp8_e4m3"


def test_unknown_backend_arg_is_named_with_suggestions() -> None:
    with pytest.raises(ConfigError) as e:
        build_server_args(_config(backend_args={"mem_fraction_statik": 0.8}))
    assert "mem_fraction_statik" in e.value.message
    assert "mem_fraction_static" in e.value.message


@pytest.mark.parametrize("key,hint", [
    ("enable_ep_moe", "ep_size"), ("enable_deepep_moe", "moe_a2a_backend"),
    ("enable_dp_attention", "attn_dp_size"), ("cuda_graph_max_bs", "cuda_graph_max_bs_decode")])
def test_removed_or_deprecated_flags_are_refused(key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_server_args(_config(backend_args={key: True}))
    assert key in e.value.message and hint in e.value.message


def test_deprecated_flags_never_appear_in_generated_arguments() -> None:
    table = FlagTable.pinned()
    deprecated = {f.dest for f in (table[d] for d in table.dests) if f.deprecated}
    assert {"enable_dp_attention", "grpc_mode"} <= deprecated
    for name in PROFILES:
        args = build_server_args(_config(), get_profile(name))
        assert not deprecated & set(args.args)
        words = " ".join(args.launch_commands(ADDR))
        for flag in ("--enable-dp-attention", "--enable-ep-moe", "--enable-deepep-moe",
                     "--disable-cuda-graph ", "--quantization", "--dp-size",
                     "--reasoning-parser"):
            assert flag not in words, (name, flag)


@pytest.mark.parametrize("key", sorted(OWNED))
def test_keys_r1serve_owns_cannot_be_overridden(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_server_args(_config(backend_args={key: 1}))


def test_values_are_checked_against_choices_and_types() -> None:
    with pytest.raises(ConfigError, match="must be one of"):
        build_server_args(_config(backend_args={"moe_a2a_backend": "nccl"}))
    with pytest.raises(ConfigError, match="true or false"):
        build_server_args(_config(backend_args={"enable_eplb": "yes"}))
    with pytest.raises(ConfigError, match="integer"):
        build_server_args(_config(backend_args={"chunked_prefill_size": 4096.5}))


def test_ep_size_must_span_the_instance() -> None:
    with pytest.raises(ConfigError, match="engine.ep_size"):
        build_server_args(_config(nodes_per_replica=2, devices_per_node=8, ep_size=8))


def test_model_path_is_required() -> None:
    with pytest.raises(ConfigError, match="model.path"):
        build_server_args(R1ServeConfig.from_dict({"model": {"backend": "sglang"}}))


def test_max_running_only_when_set() -> None:
    assert "max_running_requests" not in build_server_args(_config()).args
    args = build_server_args(_config(max_running=256, max_batched_tokens=8192))
    assert args.args["max_running_requests"] == 256


def test_multi_node_command_needs_an_address_and_defaults_to_placeholder() -> None:
    args = build_server_args(_config(), get_profile("h100x16"))
    lines = args.launch_commands()
    assert all("--dist-init-addr $HEAD_IP:5000" in line for line in lines)
    assert ["--node-rank 0" in lines[0], "--node-rank 1" in lines[1]] == [True, True]
    with pytest.raises(ConfigError):
        args.launch_argv(node_rank=1)


def test_profile_named_in_backend_args() -> None:
    args = build_server_args(_config(nodes_per_replica=2, devices_per_node=8,
                                     backend_args={"profile": "h100x16"}))
    assert args.profile == "h100x16" and "profile" not in args.args
    with pytest.raises(ConfigError, match="nodes_per_replica=1"):
        build_server_args(_config(nodes_per_replica=2, devices_per_node=8,
                                  backend_args={"profile": "h200x8"}))
    with pytest.raises(ConfigError, match="unknown SGLang profile"):
        build_server_args(_config(backend_args={"profile": "h100x8"}))


CONFIGS = sorted((Path(__file__).parents[4] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_generate_valid_arguments(sglang_server_args, path: Path) -> None:
    config = R1ServeConfig.from_yaml(path)
    if config.model.backend != "sglang":
        pytest.skip("not an SGLang config")
    args = build_server_args(config)
    for line in args.launch_commands(ADDR):
        parsed = _parse(sglang_server_args, shlex.split(line))
        assert parsed.tp_size == config.engine.nodes_per_replica * config.engine.devices_per_node
