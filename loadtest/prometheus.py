"""The server's own view: Prometheus metrics scraped before and after a run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# Samples of these suffixes are cumulative within a histogram or summary family.
_CUMULATIVE_SUFFIXES = ("_count", "_sum", "_bucket")


@dataclass(frozen=True)
class MetricsSnapshot:
    """One scrape: each sample's value by `name{labels}`, and each family's declared type."""

    samples: dict[str, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def kind(self, sample: str) -> str:
        """The declared type of the family a sample belongs to ("untyped" if none)."""
        name = sample.split("{", 1)[0]
        if name in self.types:
            return self.types[name]
        for suffix in ("_total", "_created", *_CUMULATIVE_SUFFIXES):
            if name.endswith(suffix) and name[: -len(suffix)] in self.types:
                return self.types[name[: -len(suffix)]]
        return "untyped"


def parse(text: str) -> MetricsSnapshot:
    """Parse the Prometheus text exposition format (only what deltas need)."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        # The value follows the last space outside the labels; an optional timestamp may follow.
        close = line.rfind("}")
        if close >= 0:
            head, rest = line[: close + 1], line[close + 1:]
        else:
            head, _, rest = line.partition(" ")
        fields_ = rest.split()
        if not fields_:
            continue
        try:
            samples[head.strip()] = float(fields_[0])
        except ValueError:
            continue
    return MetricsSnapshot(samples, types)


def deltas(before: MetricsSnapshot, after: MetricsSnapshot) -> dict[str, Any]:
    """Counter (and histogram/summary count and sum) increases over the run, plus the gauges'
    values after it. A counter that went down was reset (server restart) and is flagged."""
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    resets: list[str] = []
    for name, value in after.samples.items():
        kind = after.kind(name)
        base = name.split("{", 1)[0]
        if base.endswith("_created") or base.endswith("_bucket"):
            continue
        if kind == "counter" or (kind in ("histogram", "summary")
                                 and base.endswith(("_count", "_sum"))):
            delta = value - before.samples.get(name, 0.0)
            if delta < 0:
                resets.append(name)
            if delta != 0 and math.isfinite(delta):
                counters[name] = delta
        elif kind == "gauge":
            gauges[name] = value
    return {"counter_deltas": counters, "gauges_after": gauges, "counter_resets": resets}


async def scrape(url: str, headers: dict[str, str], timeout_s: float = 10.0
                 ) -> tuple[MetricsSnapshot | None, str | None]:
    """One scrape of `url`, or None and the reason it failed (metrics are optional)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return None, f"{url} answered HTTP {resp.status}"
            return parse(await resp.text()), None
    except (aiohttp.ClientError, TimeoutError) as e:
        return None, f"{url}: {type(e).__name__}: {e}"
