"""PNG plots of a run or a sweep (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from loadtest.record import RequestRecord  # noqa: E402
from loadtest.sweep import SweepPoint  # noqa: E402


def latency_cdfs(records: Sequence[RequestRecord], path: Path) -> Path:
    """Empirical CDFs of TTFT, time to first answer token, TPOT and end-to-end latency."""
    done = [r for r in records if r.ok]
    series = {"TTFT": [r.ttft_s for r in done], "time to first answer": [r.ttfat_s for r in done],
              "TPOT": [r.tpot_s for r in done], "end-to-end": [r.e2e_s for r in done]}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (name, values) in zip(axes.flat, series.items(), strict=True):
        xs = np.sort([v for v in values if v is not None])
        if len(xs):
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post")
        ax.set_title(name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def throughput_over_time(records: Sequence[RequestRecord], path: Path,
                         bin_s: float = 1.0) -> Path:
    """Output-token chunks per second and requests completed per second, in `bin_s` bins."""
    done = [r for r in records if r.ok]
    tokens = np.array([t for r in done for t in r.chunk_times_s])
    ends = np.array([r.end_s for r in done])
    fig, ax = plt.subplots(figsize=(10, 4))
    if len(ends):
        top = max(ends.max(), tokens.max() if len(tokens) else 0.0)
        bins = np.arange(0.0, top + bin_s, bin_s)
        ax.plot(bins[:-1], np.histogram(tokens, bins)[0] / bin_s, label="token chunks/s")
        ax.set_ylabel("token chunks/s")
        ax2 = ax.twinx()
        ax2.plot(bins[:-1], np.histogram(ends, bins)[0] / bin_s, color="tab:orange",
                 label="requests completed/s")
        ax2.set_ylabel("requests/s")
    ax.set_xlabel("seconds since start")
    ax.set_title("Throughput over time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def latency_vs_load(points: Sequence[SweepPoint], path: Path, unit: str) -> Path:
    """p50 and p99 TTFT, TPOT and e2e latency, and goodput, against offered load."""
    loads = [p.load for p in points]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (name, attr) in zip(axes, (("TTFT", "ttft_s"), ("TPOT", "tpot_s"),
                                       ("end-to-end", "e2e_s")), strict=False):
        for q in ("p50", "p99"):
            values = [getattr(p.result.summary, attr).percentiles.get(q) for p in points]
            ax.plot(loads, [np.nan if v is None else v for v in values], marker="o", label=q)
        ax.set_title(f"{name} (s)")
        ax.set_xlabel(unit)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[3].plot(loads, [p.result.summary.goodput_rps for p in points], marker="o",
                 label="goodput")
    axes[3].plot(loads, [p.result.summary.requests_per_s for p in points], marker="x",
                 label="completed")
    axes[3].set_title("requests/s")
    axes[3].set_xlabel(unit)
    axes[3].legend()
    axes[3].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
