"""Parsing Prometheus text and the deltas over a run."""

from __future__ import annotations

from loadtest.prometheus import deltas, parse

BEFORE = """# HELP sglang:prompt_tokens_total Prompt tokens.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="r1"} 100.0
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="r1"} 0.0
# TYPE sglang:e2e_request_latency_seconds histogram
sglang:e2e_request_latency_seconds_bucket{le="1.0",model_name="r1"} 1.0
sglang:e2e_request_latency_seconds_sum{model_name="r1"} 0.5
sglang:e2e_request_latency_seconds_count{model_name="r1"} 1.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total 7 1700000000000
"""

AFTER = BEFORE.replace("} 100.0", "} 350.0").replace("_count{model_name=\"r1\"} 1.0",
                                                      "_count{model_name=\"r1\"} 4.0") \
    .replace("num_running_reqs{model_name=\"r1\"} 0.0", "num_running_reqs{model_name=\"r1\"} 3")


def test_counter_and_histogram_deltas_and_gauges() -> None:
    d = deltas(parse(BEFORE), parse(AFTER))
    assert d["counter_deltas"] == {
        'sglang:prompt_tokens_total{model_name="r1"}': 250.0,
        'sglang:e2e_request_latency_seconds_count{model_name="r1"}': 3.0}
    assert d["gauges_after"] == {'sglang:num_running_reqs{model_name="r1"}': 3.0}
    assert parse(BEFORE).samples["vllm:prefix_cache_hits_total"] == 7.0
    assert d["counter_resets"] == []
