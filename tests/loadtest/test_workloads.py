"""Workloads: lengths, trace parsing and prefix sharing through repeated hash ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtest.length_distribution import LengthDistribution
from loadtest.workloads import (
    AzureTrace,
    MooncakeTrace,
    MultiTurnConversations,
    PromptFile,
    SyntheticReasoning,
)

# ../shared beside the checkout, as on every development and CI machine
TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


def write_mooncake(tmp_path: Path) -> Path:
    rows = [{"timestamp": 0, "input_length": 1500, "output_length": 5, "hash_ids": [7, 8, 9]},
            {"timestamp": 300, "input_length": 1100, "output_length": 6, "hash_ids": [7, 8, 11]},
            {"timestamp": 100, "input_length": 600, "output_length": 7, "hash_ids": [12, 13]}]
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mooncake_equal_hash_ids_give_identical_blocks(tmp_path: Path) -> None:
    sessions = MooncakeTrace(write_mooncake(tmp_path), tick_s=0).sessions()
    assert [s.arrival_s for s in sessions] == [0.0, 0.1, 0.3]  # sorted by time
    a, b = (s.turns[0].messages[0].content.split() for s in (sessions[0], sessions[2]))
    assert len(a) == 1500 and len(b) == 1100
    assert a[:1024] == b[:1024]  # hash ids 7, 8
    assert a[1024:1100] != b[1024:1100]  # 9 vs 11
    assert sessions[2].turns[0].max_tokens == 6
    assert sessions[0].turns[0].expected_prompt_tokens == 1500


def test_mooncake_real_trace_shares_prefixes_exactly(tmp_path: Path) -> None:
    sessions = MooncakeTrace(TRACES / "mooncake_conversation_trace.jsonl", limit=50).sessions()
    rows = [json.loads(line) for line in
            (TRACES / "mooncake_conversation_trace.jsonl").read_text().splitlines()[:50]]
    blocks: dict[int, list[str]] = {}
    by_id = sorted(sessions, key=lambda s: int(s.session_id.split("-")[1]))
    for row, session in zip(sorted(rows, key=lambda r: r["timestamp"]), by_id, strict=True):
        words = session.turns[0].messages[0].content.split()
        assert abs(len(words) - row["input_length"]) <= 512
        for k, hash_id in enumerate(row["hash_ids"][:-1]):  # full blocks
            block = words[512 * k: 512 * (k + 1)]
            assert blocks.setdefault(hash_id, block) == block


def test_mooncake_requests_arrive_spread_over_the_trace_tick() -> None:
    path = TRACES / "mooncake_conversation_trace.jsonl"
    rows = sorted((json.loads(line) for line in path.read_text().splitlines()[:200]),
                  key=lambda r: r["timestamp"])
    recorded = [(r["timestamp"] - rows[0]["timestamp"]) / 1000 for r in rows]
    assert len(set(recorded)) < len(rows) / 5  # the trace's 3-s clock: bursts as recorded
    spread = MooncakeTrace(path, limit=200).sessions()
    times = [s.arrival_s for s in spread]
    assert times == sorted(times) and len(set(times)) == len(times)
    offsets = [s.arrival_s - recorded[int(s.session_id.split("-")[1])] for s in spread]
    assert all(0 <= dt < 3.0 for dt in offsets)
    assert 1.0 < float(np.mean(offsets)) < 2.0  # uniform over the tick, not at its start
    again = [s.arrival_s for s in MooncakeTrace(path, limit=200).sessions()]
    other = [s.arrival_s for s in MooncakeTrace(path, limit=200, seed=1).sessions()]
    assert again == times and other != times
    as_recorded = MooncakeTrace(path, limit=200, tick_s=0).sessions()
    assert [s.arrival_s for s in as_recorded] == recorded
    with pytest.raises(ValueError, match="--trace-tick-s"):
        MooncakeTrace(path, tick_s=-1)


def test_azure_trace_times_and_lengths() -> None:
    sessions = AzureTrace(TRACES / "AzureLLMInferenceTrace_code_2023.csv", limit=3).sessions()
    assert [round(s.arrival_s, 3) for s in sessions] == [0.0, 0.052, sessions[2].arrival_s
                                                         and round(sessions[2].arrival_s, 3)]
    assert sessions[0].turns[0].max_tokens == 10
    assert len(sessions[0].turns[0].messages[0].content.split()) == 4808


def test_trace_outputs_can_follow_a_reasoning_model(tmp_path: Path) -> None:
    lengths = LengthDistribution("fixed", 9000)
    sessions = MooncakeTrace(write_mooncake(tmp_path), output_lengths=lengths).sessions()
    assert {s.turns[0].max_tokens for s in sessions} == {9000}


def test_synthetic_reasoning_is_deterministic_and_heavy_tailed() -> None:
    out = LengthDistribution("pareto", 4000, 1.5, 64, 32768)
    w = SyntheticReasoning(2000, LengthDistribution("lognormal", 512, 0.5, 16, 4096), out,
                           system_prompt_tokens=32, seed=4)
    a, b = w.sessions(), w.sessions()
    assert a == b
    maxes = np.array([s.turns[0].max_tokens for s in a])
    assert maxes.max() == 32768 and maxes.min() >= 64
    assert np.median(maxes) < maxes.mean()  # right-skewed
    systems = {s.turns[0].messages[0].content for s in a}
    assert len(systems) == 1  # one shared system prompt


def test_conversations_and_prompt_files(tmp_path: Path) -> None:
    conv = MultiTurnConversations(5, 2, 4, LengthDistribution("fixed", 20),
                                  LengthDistribution("fixed", 8), think_time_s=0.5).sessions()
    assert all(s.carry_history and 2 <= len(s.turns) <= 4 for s in conv)
    assert conv[0].turns[1].think_time_s == 0.5 and conv[0].turns[0].think_time_s == 0.0
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "hi", "max_tokens": 3}\n'
                    '{"messages": [{"role": "system", "content": "s"},'
                    ' {"role": "user", "content": "u"}]}\n')
    file_sessions = PromptFile(path, default_max_tokens=7).sessions()
    assert [s.turns[0].max_tokens for s in file_sessions] == [3, 7]
    assert file_sessions[1].turns[0].messages[0].role == "system"
