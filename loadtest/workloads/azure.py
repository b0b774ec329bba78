"""Replay of the Azure LLM inference 2023 CSV traces: arrival times and lengths."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from loadtest import prompt_text
from loadtest.length_distribution import LengthDistribution
from loadtest.request_spec import Message, RequestSpec, Session


@dataclass(frozen=True)
class AzureTrace:
    """Each CSV row (`TIMESTAMP`, `ContextTokens`, `GeneratedTokens`) becomes one single-turn
    session due at its timestamp relative to the first row. The trace has no prefix
    information, so every prompt is unique text. `output_lengths` replaces the trace's output
    lengths when given."""

    path: Path
    limit: int | None = None
    output_lengths: LengthDistribution | None = None
    seed: int = 0
    timed: bool = True

    def sessions(self) -> list[Session]:
        rows = _read_rows(self.path, self.limit)
        outputs = (self.output_lengths.sample(np.random.default_rng(self.seed), len(rows))
                   if self.output_lengths else [n_out for _, _, n_out in rows])
        t0 = rows[0][0] if rows else 0.0
        result = []
        for i, ((t, n_in, _), n_out) in enumerate(zip(rows, outputs, strict=True)):
            n_in = max(1, n_in)
            spec = RequestSpec(
                request_id=f"azure-{i}",
                messages=(Message("user", prompt_text.text(f"azure-{i}", n_in)),),
                max_tokens=max(1, n_out),
                expected_prompt_tokens=n_in,
            )
            result.append(Session(session_id=f"azure-{i}", turns=(spec,), arrival_s=t - t0))
        return result


def _parse_time(value: str) -> float:
    # The trace writes 7 fractional digits; datetime takes at most 6.
    head, _, frac = value.strip().partition(".")
    stamp = datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}")
    return stamp.timestamp()


def _read_rows(path: Path, limit: int | None) -> list[tuple[float, int, int]]:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: not an Azure LLM trace; expected columns {sorted(need)}")
        for row in reader:
            if limit is not None and len(rows) >= limit:
                break
            rows.append((_parse_time(row["TIMESTAMP"]), int(row["ContextTokens"]),
                         int(row["GeneratedTokens"])))
    rows.sort(key=lambda r: r[0])
    return rows
