"""The runner against the fake server: trace order and timing, closed loop, conversations."""

from __future__ import annotations

import asyncio
import json

from loadtest.arrival import ConcurrencyArrival, TraceArrival
from loadtest.endpoint import Endpoint
from loadtest.length_distribution import LengthDistribution
from loadtest.runner import Runner
from loadtest.summary import summarize
from loadtest.workloads import MooncakeTrace, MultiTurnConversations, SyntheticReasoning


def test_trace_replay_keeps_order_timing_and_prefix_sharing(fake_server, tmp_path) -> None:
    rows = [{"timestamp": 0, "input_length": 1536, "output_length": 4, "hash_ids": [1, 2, 3]},
            {"timestamp": 200, "input_length": 1536, "output_length": 4, "hash_ids": [1, 2, 4]},
            {"timestamp": 400, "input_length": 1024, "output_length": 4, "hash_ids": [5, 6]},
            {"timestamp": 600, "input_length": 1536, "output_length": 4, "hash_ids": [1, 2, 3]}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    server = fake_server()
    schedule = TraceArrival(time_scale=0.5).schedule(MooncakeTrace(path, tick_s=0).sessions())
    records = asyncio.run(Runner(Endpoint(server.url, "r1")).run(schedule))
    records.sort(key=lambda r: r.sent_s)
    assert [r.request_id for r in records] == [f"mooncake-{i}" for i in range(4)]
    for record, due in zip(records, (0.0, 0.1, 0.2, 0.3), strict=True):
        assert record.due_s == due
        # sent on time: late by well under the 100 ms between arrivals (a shared CI host can
        # hold a ready task back by a few tens of milliseconds)
        assert 0 <= record.client_queue_s < 0.05
    # The server received the requests in trace order, and equal ids came as equal text.
    prompts = [log.body["messages"][0]["content"] for log in server.logs]
    assert prompts[0] == prompts[3] and prompts[0][:100] == prompts[1][:100]
    # Its block cache (512 words) saw: none, 2 blocks, none, 3 blocks.
    assert [r.cached_tokens for r in records] == [0, 1024, 0, 1536]
    assert summarize(records).cache_hit_rate == (1024 + 1536) / (1536 * 3 + 1024)


def test_closed_loop_keeps_concurrency_and_due_times(fake_server) -> None:
    server = fake_server()
    w = SyntheticReasoning(12, LengthDistribution("fixed", 8), LengthDistribution("fixed", 10))
    schedule = ConcurrencyArrival(3).schedule(w.sessions())
    records = asyncio.run(Runner(Endpoint(server.url, "r1")).run(schedule))
    assert len(records) == 12 and all(r.ok for r in records)
    assert server.max_in_flight == 3
    assert max(r.client_queue_s for r in records) < 0.05  # closed loop: no backlog


def test_conversations_resend_history_after_each_answer(fake_server) -> None:
    server = fake_server()
    w = MultiTurnConversations(2, 3, 3, LengthDistribution("fixed", 600),
                               LengthDistribution("fixed", 4), think_time_s=0.05)
    schedule = ConcurrencyArrival(2).schedule(w.sessions())
    records = asyncio.run(Runner(Endpoint(server.url, "r1")).run(schedule))
    by_id = {r.request_id: r for r in records}
    for c in range(2):
        turns = [by_id[f"conv-{c}-turn-{t}"] for t in range(3)]
        for before, after in zip(turns, turns[1:], strict=False):
            assert after.due_s == before.end_s + 0.05  # answer, then think time
            assert after.sent_s >= after.due_s
    bodies = [log.body["messages"] for log in server.logs
              if len(log.body["messages"]) == 5]
    assert bodies and bodies[0][1]["role"] == "assistant" and bodies[0][1]["content"] == " w2 w3"
    assert summarize(records).cache_hit_rate > 0


def test_failed_turn_leaves_the_rest_of_its_session_unsent(free_port) -> None:
    w = MultiTurnConversations(1, 3, 3, LengthDistribution("fixed", 5),
                               LengthDistribution("fixed", 4))
    schedule = ConcurrencyArrival(1).schedule(w.sessions())
    records = asyncio.run(Runner(Endpoint(f"http://127.0.0.1:{free_port}", "r1")).run(schedule))
    assert [r.error_kind for r in records] == ["connect", "not_sent", "not_sent"]
    s = summarize(records)
    assert (s.requests_failed, s.requests_not_sent) == (1, 2)


