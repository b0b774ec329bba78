"""The workaround for SGLang 0.5.23's DP launch (`serve/engine/sglang/ray_engine.py`).

Two kinds of test. The first reads SGLang's installed source (no import: its Ray engine module
needs SGLang's full dependencies) and fails when the bug's shape changes, which is when the
workaround stops being needed or stops reaching the call. The second runs SGLang's own launch
code on the h800x32-wide-ep profile's settings, with only the DP controller (which would start
GPU actors) stood in for: SGLang's RayEngine refuses, r1serve's goes on. It needs SGLang's full
dependencies (torchvision among them), as in the serving image.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from serve.config import R1ServeConfig
from serve.engine.sglang.profiles import get_profile
from serve.engine.sglang.ray_engine import DP_CONTROLLER, PUBLISHED_REFUSAL, with_dp_launch_fix
from serve.engine.sglang.server_args import build_server_args
from serve.errors import ConfigError

R1_CONFIG = Path(__file__).parents[4] / ".." / "shared" / "data" / "deepseek-r1" / "config.json"


def _source(module: str) -> ast.Module:
    spec = importlib.util.find_spec("sglang")
    if spec is None or spec.origin is None:
        pytest.skip("sglang is not installed: bash scripts/install_test_sglang.sh .venv")
    path = Path(spec.origin).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    return ast.parse(path.read_text())


def _function(tree: ast.AST, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name | ast.Attribute)
            and (n.func.id if isinstance(n.func, ast.Name) else n.func.attr) == name]


def test_sglang_still_declares_after_publishing() -> None:
    """Fails once SGLang fixes the bug (the workaround can go) or moves the call out of reach
    of the workaround (it must follow)."""
    ray_engine = _source("sglang.srt.ray.engine")
    imported = {a.name for n in ast.walk(ray_engine) if isinstance(n, ast.ImportFrom)
                and n.module == "sglang.srt.arg_groups.overrides" for a in n.names}
    assert "declare_resolution" in imported  # a module global the workaround can stand in for
    launch = _function(ray_engine, "_launch_dp_scheduler_processes")
    sources = [c.args[1].value for c in _calls(launch, "declare_resolution")]
    assert sources == [DP_CONTROLLER]

    overrides = _source("sglang.srt.arg_groups.overrides")
    declare = ast.unparse(_function(overrides, "declare_resolution"))
    assert "published is server_args" in declare and PUBLISHED_REFUSAL in declare

    engine = _function(_source("sglang.srt.entrypoints.engine"), "_launch_subprocesses")
    lines = {name: min(c.lineno for c in _calls(engine, name))
             for name in ("publish", "_launch_scheduler_processes")}
    assert lines["publish"] < lines["_launch_scheduler_processes"]


class _SglangModule:
    """A stand-in for SGLang's Ray engine module: just its `declare_resolution`."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict]] = []

    def declare_resolution(self, server_args, source: str, **fields) -> None:
        self.calls.append((source, fields))
        if self.error is not None:
            raise self.error


class _Record:
    def __init__(self, nnodes: int, dist_init_addr: str | None) -> None:
        self.nnodes, self.dist_init_addr = nnodes, dist_init_addr


def _engine_class(module: _SglangModule, monkeypatch: pytest.MonkeyPatch):
    class RayEngine:
        @classmethod
        def _launch_dp_scheduler_processes(cls, server_args, *args):
            module.declare_resolution(server_args, DP_CONTROLLER, dist_init_addr="a:1")
            return "launched"

    monkeypatch.setitem(sys.modules, "_sglang_ray_engine_stand_in", module)
    RayEngine.__module__ = "_sglang_ray_engine_stand_in"
    return with_dp_launch_fix(RayEngine)


def test_only_the_published_dp_declaration_passes(monkeypatch) -> None:
    refusal = ValueError(f"{DP_CONTROLLER}: {PUBLISHED_REFUSAL}; the stash is projected ...")
    module = _SglangModule(refusal)
    engine = _engine_class(module, monkeypatch)
    assert engine._launch_dp_scheduler_processes(_Record(4, "10.0.0.9:5000")) == "launched"
    assert module.declare_resolution.__func__ is _SglangModule.declare_resolution  # restored
    with pytest.raises(ConfigError, match="dist_init_addr"):
        engine._launch_dp_scheduler_processes(_Record(4, None))
    assert engine._launch_dp_scheduler_processes(_Record(1, None)) == "launched"
    other = _SglangModule(ValueError("something else"))
    with pytest.raises(ValueError, match="something else"):
        _engine_class(other, monkeypatch)._launch_dp_scheduler_processes(
            _Record(4, "10.0.0.9:5000"))


def test_wide_ep_launch_gets_past_sglangs_refusal(monkeypatch, tmp_path) -> None:
    """SGLang's own code on the h800x32-wide-ep settings: published as its Engine publishes
    them, then its DP launch, whose controller (GPU actors) is the only stand-in."""
    try:
        import sglang.srt.ray.data_parallel_controller as dp_controller
        import sglang.srt.ray.engine as sglang_ray
        from sglang.srt.runtime_context import (
            get_parallel,
            publish,
            restore_context,
            snapshot_context,
        )
        from sglang.srt.server_args import PortArgs, ServerArgs
    except ImportError as e:
        pytest.skip(f"needs SGLang with its full dependencies ({e})")
    if not R1_CONFIG.exists():
        pytest.skip("shared/data/deepseek-r1 is not beside this checkout")
    from serve.engine.sglang.engine import _free_port_block

    shutil.copy(R1_CONFIG, tmp_path / "config.json")  # what resolving reads of the model
    config = R1ServeConfig.from_dict({"model": {"path": str(tmp_path), "backend": "sglang"}})
    args = build_server_args(config, get_profile("h800x32-wide-ep"))
    address = f"127.0.0.1:{_free_port_block(8)}"
    # device="cpu": resolving looks for an accelerator; the launch path is the same.
    server_args = ServerArgs(**args.engine_kwargs(address), device="cpu")

    class Controller:
        """Stands in for RayDataParallelController, which would start 32 GPU actors."""

        def __init__(self, server_args, port_args, pg, bundle_for_node, rank0_ip, custom):
            self.server_args, self.event_loop_refs, self.scheduler_actors = server_args, [], []

        def event_loop(self) -> None:
            pass

        def get_init_info(self) -> dict:
            return {"status": "ready"}

    monkeypatch.setattr(dp_controller, "RayDataParallelController", Controller)
    before = snapshot_context()
    try:
        publish(server_args, role="tokenizer")
        # RayEngine takes its DP launch (not the one for a single TP group) on these settings.
        assert get_parallel().num_dp_ranks == 32
        port_args = PortArgs.init_new(server_args)
        launch = (server_args, port_args, None, [0, 1, 2, 3], "127.0.0.1", False)
        with pytest.raises(ValueError, match=PUBLISHED_REFUSAL):
            sglang_ray.RayEngine._launch_dp_scheduler_processes(*launch)
        result = with_dp_launch_fix(sglang_ray.RayEngine)._launch_dp_scheduler_processes(
            *launch)
        assert result.scheduler_infos == [{"status": "ready"}]
        assert sglang_ray.declare_resolution.__module__ == "sglang.srt.arg_groups.overrides"
    finally:
        restore_context(before)
