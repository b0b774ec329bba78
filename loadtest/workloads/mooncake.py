"""Replay of the Mooncake FAST'25 JSONL trace: arrival times, lengths and prefix blocks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest import prompt_text
from loadtest.length_distribution import LengthDistribution
from loadtest.request_spec import Message, RequestSpec, Session

BLOCK_TOKENS = 512
# The trace's clock: its timestamps lie 3,000 ms apart (give or take 1), about ten to a tick.
TICK_S = 3.0


@dataclass(frozen=True)
class MooncakeTrace:
    """Each trace line becomes one single-turn session due at a random moment of the `tick_s`
    from its `timestamp` (ms) on, drawn from the seed. The trace records arrivals on a 3-second
    clock; replayed as recorded, each tick would send its ten requests in one instant, a burst
    no client sent (`tick_s` 0 replays the recorded instants). Session ids follow the lines'
    timestamp order; the sessions come in arrival order.

    The prompt is the concatenation of one text block per `hash_ids` entry, each block built
    from its id alone (`prompt_text.block_text`), so requests whose ids repeat share exactly the
    same text for those blocks, and a server with a prefix cache can reuse them. The last block
    holds the remainder of `input_length`. `output_lengths`, when given, replaces the trace's
    output lengths (they are chat answers, far shorter than R1's reasoning).
    """

    path: Path
    limit: int | None = None
    output_lengths: LengthDistribution | None = None
    seed: int = 0
    tick_s: float = TICK_S
    timed: bool = True

    def __post_init__(self) -> None:
        if self.tick_s < 0:
            raise ValueError(f"--trace-tick-s must be 0 (as recorded) or more, got {self.tick_s}")

    def sessions(self) -> list[Session]:
        rows = _read_rows(self.path, self.limit)
        outputs = (self.output_lengths.sample(np.random.default_rng(self.seed), len(rows))
                   if self.output_lengths else [int(r["output_length"]) for r in rows])
        within = np.random.default_rng([self.seed, 1]).uniform(0.0, self.tick_s, len(rows))
        t0 = rows[0]["timestamp"] if rows else 0
        result = []
        for i, (row, n_out, dt) in enumerate(zip(rows, outputs, within, strict=True)):
            prompt, n_in = prompt_for_blocks(row["hash_ids"], int(row["input_length"]))
            spec = RequestSpec(request_id=f"mooncake-{i}", messages=(Message("user", prompt),),
                               max_tokens=max(1, n_out), expected_prompt_tokens=n_in)
            result.append(Session(session_id=f"mooncake-{i}", turns=(spec,),
                                  arrival_s=(row["timestamp"] - t0) / 1000.0 + float(dt)))
        return sorted(result, key=lambda s: s.arrival_s)


def prompt_for_blocks(hash_ids: list[int], input_length: int) -> tuple[str, int]:
    """The prompt text for a list of block ids and its approximate token count."""
    pieces = []
    remaining = input_length
    for hash_id in hash_ids:
        # Full blocks except the last, which holds what is left of input_length (at least one
        # token, since the trace sometimes rounds input_length below the block count).
        n = BLOCK_TOKENS if remaining > BLOCK_TOKENS else max(1, remaining)
        pieces.append(prompt_text.block_text(hash_id, n, BLOCK_TOKENS))
        remaining -= n
    text = "".join(pieces)
    return text, input_length - max(0, remaining)


def _read_rows(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"timestamp", "input_length", "output_length", "hash_ids"} - row.keys()
            if missing:
                raise ValueError(f"{path}:{line_no}: not a Mooncake trace line, missing "
                                 f"{sorted(missing)}")
            rows.append(row)
    rows.sort(key=lambda r: r["timestamp"])  # stable: equal timestamps keep file order
    return rows
