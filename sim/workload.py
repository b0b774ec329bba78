"""Workloads to replay: the Mooncake conversation trace, the Azure LLM inference trace and a
synthetic reasoning workload.

Prefix structure is carried as block ids (one per `BLOCK_TOKENS` tokens of the prompt), equal ids
meaning an identical prefix up to and including that block, as in the Mooncake trace.

The Mooncake trace records arrivals on a 3-second clock: its 12,031 requests share 1,180
timestamps, 3,000 ms apart (give or take 1), about ten to a tick. Replayed as recorded, every
tick would be a burst of ten requests in the same instant, which no client sent; so each request
is placed at a uniformly random moment of its tick, drawn from the seed and its line number.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from pathlib import Path

from serve.engine.output_length import R1_PRIOR
from sim.replica_model import SimRequest

BLOCK_TOKENS = 512
MOONCAKE_TICK_S = 3.0  # the trace's clock: how far apart its distinct timestamps lie
TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces"
MOONCAKE = TRACES / "mooncake_conversation_trace.jsonl"
AZURE_CONV = TRACES / "AzureLLMInferenceTrace_conv_2023.csv"


def r1_output_tokens(rng: random.Random, median: float = R1_PRIOR.median_tokens,
                     sigma: float = R1_PRIOR.sigma, cap: int = 32768) -> int:
    """An R1-like output length: reasoning runs to thousands of tokens, log-normal with a
    heavy tail, cut at the 32K max_tokens R1 is served with."""
    return max(16, min(cap, round(median * math.exp(rng.gauss(0.0, sigma)))))


def load_mooncake(path: Path | str = MOONCAKE, *, limit: int | None = None, skip: int = 0,
                  time_scale: float = 1.0, r1_outputs: bool = False, seed: int = 0,
                  max_tokens: int = 32768, tick_s: float = MOONCAKE_TICK_S) -> list[SimRequest]:
    """The trace's requests in arrival order (timestamps in ms, divided by `time_scale`);
    with `r1_outputs`, output lengths are drawn from `r1_output_tokens` instead. `skip` drops
    the trace's first requests (a later window of it), and time then starts at the first
    timestamp kept. Each request arrives at a random moment of the `tick_s` from its timestamp
    on, the same for a line and seed in every window (`tick_s` 0: at the timestamp)."""
    if tick_s < 0:
        raise ValueError(f"tick_s={tick_s!r}: a tick is 0 seconds (as recorded) or longer")
    rng = random.Random(seed)
    out: list[SimRequest] = []
    with open(path) as f:
        for i, line in enumerate(itertools.islice(f, skip, None)):
            if limit is not None and i >= limit:
                break
            rec = json.loads(line)
            n_out = r1_output_tokens(rng) if r1_outputs else max(1, int(rec["output_length"]))
            out.append(SimRequest(
                rid=i, arrival=rec["timestamp"] / 1000.0,
                prompt_tokens=int(rec["input_length"]), output_tokens=n_out,
                blocks=tuple(int(h) for h in rec["hash_ids"]),
                max_tokens=max_tokens if r1_outputs else max(n_out, 4096)))
    t0 = min((r.arrival for r in out), default=0.0)  # time starts at the window's first tick
    for r in out:
        within = tick_s * random.Random(f"{seed}/{skip + r.rid}").random() if tick_s else 0.0
        r.arrival = (r.arrival - t0 + within) / time_scale
    out.sort(key=lambda r: (r.arrival, r.rid))
    return out


def load_azure(path: Path | str = AZURE_CONV, *, limit: int | None = None,
               r1_outputs: bool = False, seed: int = 0,
               max_tokens: int = 32768) -> list[SimRequest]:
    """The Azure trace's requests in arrival order (`TIMESTAMP` relative to the first row).
    It records no prefixes, so every prompt is its own: blocks no other request shares."""
    rng = random.Random(seed)
    rows: list[tuple[str, int, int]] = []
    with open(path, newline="") as f:
        for row in itertools.islice(csv.DictReader(f), limit):
            rows.append((row["TIMESTAMP"], int(row["ContextTokens"]),
                         int(row["GeneratedTokens"])))
    out: list[SimRequest] = []
    t0 = _seconds(rows[0][0]) if rows else 0.0
    next_block = 0
    for i, (stamp, n_in, n_trace) in enumerate(rows):
        n_in = max(1, n_in)
        n_out = r1_output_tokens(rng) if r1_outputs else max(1, n_trace)
        n_blocks = math.ceil(n_in / BLOCK_TOKENS)
        out.append(SimRequest(
            rid=i, arrival=_seconds(stamp) - t0, prompt_tokens=n_in, output_tokens=n_out,
            blocks=tuple(range(next_block, next_block + n_blocks)),
            max_tokens=max_tokens if r1_outputs else max(n_out, 4096)))
        next_block += n_blocks
    return out


def _seconds(stamp: str) -> float:
    """`2023-11-16 18:15:46.6805900` as seconds of the day (the trace writes 7 fractional
    digits; its rows span one hour)."""
    clock = stamp.strip().split(" ")[-1]
    h, m, sec = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def synthetic_reasoning(*, sessions: int = 200, session_rate_per_s: float = 0.5,
                        mean_turns: float = 3.0, think_gap_s: float = 60.0,
                        system_prompts: int = 4, seed: int = 0) -> list[SimRequest]:
    """Multi-turn reasoning chats: sessions start as a Poisson process; each turn's prompt is
    the previous prompt plus the previous answer (R1's template drops the reasoning) plus a new
    user message, so turns share a growing prefix; outputs are `r1_output_tokens`."""
    rng = random.Random(seed)
    next_block = 1_000_000
    systems = []
    for _ in range(system_prompts):
        n = rng.randint(1, 4) * BLOCK_TOKENS
        systems.append((n, tuple(range(next_block, next_block + n // BLOCK_TOKENS))))
        next_block += n // BLOCK_TOKENS
    reqs: list[SimRequest] = []
    t = 0.0
    for s in range(sessions):
        t += rng.expovariate(session_rate_per_s)
        length, blocks = rng.choice(systems)
        at = t
        turns = 1 + int(rng.expovariate(1.0 / max(mean_turns - 1.0, 1e-9)))
        answer = 0
        for _ in range(turns):
            keep = length // BLOCK_TOKENS  # full blocks survive into the next turn
            length += answer + rng.randint(50, 3000)
            n_blocks = math.ceil(length / BLOCK_TOKENS)
            blocks = blocks[:keep] + tuple(range(next_block, next_block + n_blocks - keep))
            next_block += n_blocks - keep
            out = r1_output_tokens(rng)
            reqs.append(SimRequest(rid=len(reqs), arrival=at, prompt_tokens=length,
                                   output_tokens=out, blocks=blocks, session=f"s{s}"))
            answer = min(out, rng.randint(200, 1500))
            at += rng.expovariate(1.0 / think_gap_s) + out / 30.0  # read, think, reply
    reqs.sort(key=lambda r: (r.arrival, r.rid))
    for i, r in enumerate(reqs):
        r.rid = i
    return reqs
