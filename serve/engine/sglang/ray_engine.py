"""SGLang's `RayEngine` as r1serve starts it, with a workaround for SGLang 0.5.23's DP launch.

The bug: with data-parallel attention (`attn_dp_size` > 1, as in the h800x32-wide-ep profile)
`RayEngine` starts its schedulers through `_launch_dp_scheduler_processes`, which calls
`declare_resolution(server_args, "ray.dp_controller", dist_init_addr=...)`
(`srt/ray/engine.py`). `Engine._launch_subprocesses` has published the server args by then
(`srt/entrypoints/engine.py`), and `declare_resolution` refuses a published record
(`srt/arg_groups/overrides.py`: "ray.dp_controller: declared on the published config"), so no
instance with attention DP can start.

Why letting it pass loses nothing: on a published record the declaration could only be a no-op
(SGLang's own message says so), and what it meant to supply, the address `PortArgs.init_new`
derives the DP-attention TCP ports from, is read from the record's own `dist_init_addr`.
r1serve sets that to this node's address for every multi-node instance (`build_sglang_engine`);
a single-node one uses 127.0.0.1, PortArgs' own default. The workaround refuses to start a
multi-node instance without it.

The workaround: during that one launch, `declare_resolution` as SGLang's Ray engine module sees
it lets exactly this refusal through. Remove it when SGLang fixes the bug: delete this module
and start `sglang.srt.ray.RayEngine` itself in `build_sglang_engine`;
`tests/serve/engine/sglang/test_ray_engine.py` fails once SGLang no longer makes the declaration
after publishing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from serve.errors import ConfigError

log = logging.getLogger(__name__)

DP_CONTROLLER = "ray.dp_controller"  # the declaration's source in SGLang 0.5.23
PUBLISHED_REFUSAL = "declared on the published config"  # ... and its refusal's words


def with_dp_launch_fix(ray_engine: type) -> type:
    """`ray_engine` (SGLang's RayEngine class) with its DP launch made to work."""

    class R1RayEngine(ray_engine):  # type: ignore[misc, valid-type]
        @classmethod
        def _launch_dp_scheduler_processes(cls, server_args: Any, *args: Any,
                                           **kwargs: Any) -> Any:
            module = sys.modules[ray_engine.__module__]
            with _published_dp_declaration_tolerated(module):
                return super()._launch_dp_scheduler_processes(server_args, *args, **kwargs)

    R1RayEngine.__name__ = R1RayEngine.__qualname__ = f"R1{ray_engine.__name__}"
    return R1RayEngine


@contextlib.contextmanager
def _published_dp_declaration_tolerated(module: Any) -> Iterator[None]:
    """While it lasts, `module.declare_resolution` lets the DP controller's declaration on a
    published record pass as the no-op it would be."""
    declare = module.declare_resolution

    def declare_resolution(server_args: Any, source: str, **fields: Any) -> None:
        try:
            declare(server_args, source, **fields)
        except ValueError as e:
            if source != DP_CONTROLLER or PUBLISHED_REFUSAL not in str(e):
                raise
            if server_args.nnodes > 1 and not server_args.dist_init_addr:
                raise ConfigError(
                    "a multi-node SGLang instance with attention DP needs dist_init_addr set "
                    "to rank 0's node before it starts (build_sglang_engine sets it)") from e
            log.debug("SGLang's %s declaration on the published config skipped: "
                      "dist_init_addr=%s is on the record", source, server_args.dist_init_addr)

    module.declare_resolution = declare_resolution
    try:
        yield
    finally:
        module.declare_resolution = declare
