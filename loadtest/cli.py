"""`r1-loadtest`: load tests for reasoning workloads against an OpenAI-compatible server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loadtest import plots, report
from loadtest.config import LoadTestConfig
from loadtest.load_run import LoadRun, RunResult
from loadtest.preflight import PreflightError, resolve_model
from loadtest.sweep import SweepPoint, sweep

EPILOG = """examples:
  r1-loadtest --url http://127.0.0.1:8000 --concurrency 16 --num-requests 200 --out runs/c16
  r1-loadtest --url URL --workload conversation --rate 0.5 --think-time-s 5 --out runs/conv
  r1-loadtest --url URL --workload mooncake --trace conversation_trace.jsonl --time-scale 0.5 \\
      --num-requests 2000 --trace-outputs model --ignore-eos --out runs/mooncake
  r1-loadtest --url URL --rates 0.5,1,2,4 --slo-ttft-ms 2000 --slo-tpot-ms 80 --out runs/sweep
  r1-loadtest --url URL --find-max-rate 0.1:8 --slo-ttft-ms 2000 --slo-tpot-ms 80
  r1-loadtest --url URL --rate 20 --ray auto --workers 8 --out runs/distributed
"""


def parser() -> argparse.ArgumentParser:
    """The command-line interface; every option maps onto a `LoadTestConfig` field."""
    p = argparse.ArgumentParser(prog="r1-loadtest", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    g = p.add_argument_group("endpoint")
    g.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    g.add_argument("--model", default="", help="model (default: the server's first)")
    g.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"),
                   help="bearer token (default: $OPENAI_API_KEY)")
    g.add_argument("--extra-body", type=_json, default={}, help="JSON merged into each body")
    g.add_argument("--ignore-eos", action="store_true", help="generate exactly max_tokens")
    g.add_argument("--request-timeout-s", type=float, default=3600.0)
    g.add_argument("--metrics-url", help="Prometheus URL (default: <url>/metrics)")
    g = p.add_argument_group("workload")
    g.add_argument("--workload", default="synthetic",
                   choices=["synthetic", "conversation", "mooncake", "azure", "file"])
    g.add_argument("--trace", type=Path, help="Mooncake JSONL, Azure CSV, or prompts JSONL")
    g.add_argument("--num-requests", type=int,
                   help="requests (synthetic), conversations, or first N trace lines")
    for side, dist, mean, shape, lo, hi in (("input", "lognormal", 1024, 0.6, 16, 16384),
                                            ("output", "pareto", 4000, 1.5, 64, 32768)):
        g.add_argument(f"--{side}-dist", default=dist,
                       choices=["fixed", "uniform", "lognormal", "pareto"])
        g.add_argument(f"--{side}-mean", type=int, default=mean)
        g.add_argument(f"--{side}-shape", type=float, default=shape,
                       help="lognormal sigma, or pareto tail index (> 1)")
        g.add_argument(f"--{side}-min", type=int, default=lo)
        g.add_argument(f"--{side}-max", type=int, default=hi)
    g.add_argument("--trace-outputs", choices=["trace", "model"], default="trace",
                   help="trace replay: trace output lengths, or the --output-* model")
    g.add_argument("--trace-tick-s", type=float,
                   help="mooncake: spread each timestamp's requests over this many seconds "
                        "(default: the trace's 3-s clock; 0: as recorded)")
    g.add_argument("--system-prompt-tokens", type=int, default=0)
    g.add_argument("--min-turns", type=int, default=2)
    g.add_argument("--max-turns", type=int, default=6)
    g.add_argument("--think-time-s", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("load")
    g.add_argument("--concurrency", type=int, help="closed loop: sessions in flight")
    g.add_argument("--rate", type=float, help="open loop: sessions per second")
    g.add_argument("--burstiness", type=float, default=1.0, help="gamma shape; 1 = Poisson")
    g.add_argument("--time-scale", type=float, default=1.0,
                   help="trace replay: multiply trace times (0.5 = twice as fast)")
    g.add_argument("--ramp-up-s", type=float, default=0.0)
    g.add_argument("--duration-s", type=float, help="start nothing after this many seconds")
    g.add_argument("--rates", type=_floats, default=[], help="sweep, e.g. 0.5,1,2,4")
    g.add_argument("--concurrencies", type=_ints, default=[], help="sweep, e.g. 1,8,32")
    g.add_argument("--find-max-rate", type=_pair, metavar="LOW:HIGH",
                   help="bisect for the highest rate meeting the SLOs")
    g.add_argument("--slo-attainment", type=float, default=0.9)
    g.add_argument("--search-iterations", type=int, default=6)
    g = p.add_argument_group("SLOs and metrics")
    for name in ("ttft", "ttfat", "tpot", "e2e"):
        g.add_argument(f"--slo-{name}-ms", type=float)
    g.add_argument("--percentiles", type=_floats, default=[50.0, 90.0, 99.0])
    g = p.add_argument_group("distribution and output")
    g.add_argument("--ray", help="Ray address (e.g. auto) for distributed generation")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--out", type=Path, help="write result.json, summary.md and plots here")
    add("--no-progress", dest="progress", action="store_false")
    add("--no-metrics", dest="scrape_metrics", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a configuration or endpoint problem)."""
    args = parser().parse_args(argv)
    try:
        config = LoadTestConfig(**vars(args))
    except ValidationError as e:
        messages = "; ".join(_error(err) for err in e.errors())
        print(f"r1-loadtest: error: {messages}", file=sys.stderr)
        return 2
    try:
        model = asyncio.run(resolve_model(config.endpoint()))
        schedule_at = config.schedule_builder(config.workload_source())
    except (PreflightError, ValueError, OSError) as e:
        print(f"r1-loadtest: error: {e}", file=sys.stderr)
        return 2
    config = config.model_copy(update={"model": model})
    if config.ray:
        _connect_ray(config.ray)
    load_run = LoadRun(config.endpoint(model), config.slo(), config.percentiles, config.workers,
                       distributed=bool(config.ray), progress=config.progress,
                       scrape_metrics=config.scrape_metrics)
    execute = load_run.run
    points: list[SweepPoint] = []
    found: float | None = None
    if (search := config.rate_search()) is not None:
        found, points = search.run(schedule_at, execute)
        result = _best(points, found)
    elif loads := config.sweep_loads():
        points = sweep(loads, schedule_at, execute)
        result = points[-1].result
    else:
        result = execute(schedule_at(), "load")
    _write(config, result, points, found)
    return 0


def _write(config: LoadTestConfig, result: RunResult, points: list[SweepPoint],
           found: float | None) -> None:
    saved: dict[str, Any] = config.model_dump(mode="json")
    print(report.markdown(saved, result, points, found))
    if config.out is None:
        return
    report.write_result(config.out, saved, result, points, found)
    report.write_markdown(config.out, saved, result, points, found)
    plots.latency_cdfs(result.records, config.out / "latency_cdf.png")
    plots.throughput_over_time(result.records, config.out / "throughput.png")
    if points:
        unit = "concurrency" if config.concurrencies else "requests/s offered"
        plots.latency_vs_load(points, config.out / "latency_vs_load.png", unit)
    print(f"wrote {config.out}/result.json, summary.md and plots", file=sys.stderr)


def _best(points: list[SweepPoint], found: float | None) -> RunResult:
    for p in points:
        if p.load == found:
            return p.result
    return points[0].result


def _connect_ray(address: str) -> None:
    import ray

    import loadtest

    if not ray.is_initialized():
        # Ship this package to the cluster so workers need not have it installed.
        ray.init(address=address, runtime_env={"py_modules": [Path(loadtest.__file__).parent]},
                 log_to_driver=False)


def _error(err: Any) -> str:
    where = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"--{where.replace('_', '-')}: {msg}" if where else msg


def _json(text: str) -> dict:
    import json

    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _pair(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected LOW:HIGH, e.g. 0.5:8")
    return float(low), float(high)
