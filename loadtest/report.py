"""Writes a run's (or a sweep's) `result.json` and `summary.md`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.load_run import RunResult
from loadtest.summary import LatencyStats, Summary
from loadtest.sweep import SweepPoint

_LATENCIES = (("TTFT (any token)", "ttft_s"), ("Time to first answer token", "ttfat_s"),
              ("TPOT", "tpot_s"), ("Inter-token latency", "itl_s"), ("End-to-end", "e2e_s"),
              ("Client queueing (sent − due)", "client_queue_s"))


def write_result(out: Path, config: dict[str, Any], result: RunResult,
                 points: Sequence[SweepPoint] = (), found_rate: float | None = None) -> Path:
    """`out/result.json`: the exact configuration, the summary, the server's metric deltas and
    every request; for a sweep also each point's summary and requests."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"config": config, **result.to_json()}
    if points:
        doc["sweep"] = [{"load": p.load, "passed": p.passed, **p.result.to_json()}
                        for p in points]
        doc["max_rate_meeting_slo"] = found_rate
    path = out / "result.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    return path


def write_markdown(out: Path, config: dict[str, Any], result: RunResult,
                   points: Sequence[SweepPoint] = (), found_rate: float | None = None) -> Path:
    """`out/summary.md`: the headline numbers in tables."""
    path = out / "summary.md"
    path.write_text(markdown(config, result, points, found_rate))
    return path


def markdown(config: dict[str, Any], result: RunResult, points: Sequence[SweepPoint] = (),
             found_rate: float | None = None) -> str:
    """The summary as Markdown (also printed at the end of a run)."""
    s = result.summary
    lines = [
        "# Load test summary", "",
        f"- endpoint: `{config.get('url')}`, model `{config.get('model')}`",
        f"- workload: `{config.get('workload')}`, arrivals: `{_arrival(config)}`",
        f"- started: {result.started_at}", "",
        *_totals(s), "",
        *_latency_table(s), "",
    ]
    if points:
        lines += _sweep_table(points, found_rate)
    lines += _server(result.server)
    return "\n".join(lines) + "\n"


def _arrival(config: dict[str, Any]) -> str:
    if config.get("concurrency"):
        return f"concurrency {config['concurrency']}"
    if config.get("rate"):
        return f"rate {config['rate']}/s, burstiness {config.get('burstiness')}"
    return f"trace × {config.get('time_scale')}"


def _fmt(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "—" if x is None else f"{x * scale:.{digits}f}"


def _totals(s: Summary) -> list[str]:
    return [
        "| | |", "|---|---|",
        f"| requests completed / failed / not sent | {s.requests_completed} / "
        f"{s.requests_failed} / {s.requests_not_sent} |",
        f"| errors by kind | {s.errors_by_kind or '—'} |",
        f"| duration (s) | {_fmt(s.duration_s)} |",
        f"| requests/s | {_fmt(s.requests_per_s, digits=3)} |",
        f"| goodput (requests/s meeting SLOs) | {_fmt(s.goodput_rps, digits=3)} |",
        f"| SLO attainment | {_fmt(s.slo_attainment, 100, 1)} % |",
        f"| input tokens/s | {_fmt(s.input_tokens_per_s, digits=1)} |",
        f"| output tokens/s | {_fmt(s.output_tokens_per_s, digits=1)} |",
        f"| reasoning / answer tokens | {s.reasoning_tokens} / {s.answer_tokens} |",
        f"| prefix-cache hit rate (server) | {_fmt(s.cache_hit_rate, 100, 1)} % |",
        f"| server prompt tokens / our estimate | {_fmt(s.prompt_tokens_ratio, digits=3)} |",
        f"| token counts from | {s.token_sources} |",
    ]


def _latency_table(s: Summary) -> list[str]:
    keys = [k for k in s.ttft_s.percentiles]
    lines = ["| latency (ms) | mean | " + " | ".join(keys) + " | n |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for title, name in _LATENCIES:
        stats: LatencyStats = getattr(s, name)
        cells = [_fmt(stats.percentiles[k], 1000) for k in keys]
        lines.append(f"| {title} | {_fmt(stats.mean, 1000)} | " + " | ".join(cells)
                     + f" | {stats.count} |")
    return lines


def _sweep_table(points: Sequence[SweepPoint], found_rate: float | None) -> list[str]:
    lines = ["## Sweep", "",
             "| offered load | req/s | goodput | SLO met | TTFT p50 / p99 (ms) | "
             "TPOT p50 / p99 (ms) | e2e p50 (s) |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        s = p.result.summary
        lines.append(
            f"| {p.load:g} | {_fmt(s.requests_per_s, digits=3)} | {_fmt(s.goodput_rps, digits=3)}"
            f" | {_fmt(s.slo_attainment, 100, 1)} % | {_fmt(s.ttft_s.percentiles.get('p50'), 1000)}"
            f" / {_fmt(s.ttft_s.percentiles.get('p99'), 1000)} | "
            f"{_fmt(s.tpot_s.percentiles.get('p50'), 1000)} / "
            f"{_fmt(s.tpot_s.percentiles.get('p99'), 1000)} | "
            f"{_fmt(s.e2e_s.percentiles.get('p50'))} |")
    if found_rate is not None or any(p.passed is not None for p in points):
        lines += ["", f"Highest rate meeting the SLOs: {_fmt(found_rate, digits=3)} requests/s"]
    return lines + [""]


def _server(server: dict[str, Any]) -> list[str]:
    if "unavailable" in server:
        return ["## Server metrics", "", f"Not scraped: {server['unavailable']}"]
    counters = server.get("counter_deltas", {})
    lines = ["## Server metrics (counter deltas over the run)", "", "| metric | delta |",
             "|---|---|"]
    lines += [f"| `{k}` | {v:g} |" for k, v in sorted(counters.items())[:60]]
    if len(counters) > 60:
        lines.append(f"| … {len(counters) - 60} more in result.json | |")
    return lines
