"""The command line: clear errors before the run, and the files a run leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.cli import main
from loadtest.config import LoadTestConfig


def test_refused_connection_fails_before_the_run(free_port, capsys) -> None:
    assert main(["--url", f"http://127.0.0.1:{free_port}", "--rate", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to" in err and "--url" in err


def test_wrong_url_path_and_scheme(fake_server, capsys) -> None:
    server = fake_server()
    assert main(["--url", f"{server.url}/nope", "--rate", "1", "--no-progress"]) == 2
    assert "404" in capsys.readouterr().err
    assert main(["--url", "ftp://example", "--rate", "1"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_rejected_api_key(fake_server, capsys) -> None:
    server = fake_server(api_key="sekrit")
    assert main(["--url", server.url, "--api-key", "wrong", "--rate", "1"]) == 2
    assert "rejected the API key (HTTP 401)" in capsys.readouterr().err
    assert server.logs == []  # nothing was sent


def test_unknown_model(fake_server, capsys) -> None:
    server = fake_server(models=("deepseek-r1",))
    assert main(["--url", server.url, "--model", "llama", "--rate", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not serve model 'llama'" in err and "deepseek-r1" in err


def test_bad_options_are_named(capsys) -> None:
    assert main(["--url", "http://x", "--rate", "1", "--concurrency", "2"]) == 2
    assert "choose one load mode" in capsys.readouterr().err
    assert main(["--url", "http://x", "--workload", "mooncake", "--rate", "1"]) == 2
    assert "needs --trace" in capsys.readouterr().err
    assert main(["--url", "http://x", "--rate", "1", "--trace-tick-s", "1"]) == 2
    assert "--trace-tick-s spreads a Mooncake trace" in capsys.readouterr().err
    assert main(["--url", "http://x", "--rate", "1", "--seed", "-1"]) == 2
    assert "seed" in capsys.readouterr().err


def test_the_mooncake_tick_reaches_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    source = LoadTestConfig(url="http://x", workload="mooncake", trace=trace).workload_source()
    assert source.tick_s == 3.0
    recorded = LoadTestConfig(url="http://x", workload="mooncake", trace=trace, trace_tick_s=0)
    assert recorded.workload_source().tick_s == 0


def test_a_run_writes_result_summary_and_plots(fake_server, tmp_path: Path) -> None:
    server = fake_server()
    out = tmp_path / "run"
    code = main(["--url", f"{server.url}/v1", "--concurrency", "4", "--num-requests", "12",
                 "--input-dist", "fixed", "--input-mean", "30", "--output-dist", "fixed",
                 "--output-mean", "10", "--slo-ttft-ms", "1000", "--percentiles", "50,90,99",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    doc = json.loads((out / "result.json").read_text())
    s = doc["summary"]
    for name in ("ttft_s", "ttfat_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(s[name]) >= {"mean", "p50", "p90", "p99"}
    assert s["requests_completed"] == 12 and s["requests_failed"] == 0
    assert s["output_tokens_per_s"] > 0 and s["input_tokens_per_s"] > 0
    assert s["goodput_rps"] == pytest.approx(s["requests_per_s"])
    assert s["cache_hit_rate"] == 0.0
    assert s["reasoning_tokens"] == 60 and s["answer_tokens"] == 60
    assert len(doc["requests"]) == 12 and doc["config"]["model"] == "r1"
    assert "api_key" not in doc["config"]
    assert doc["server"]["counter_deltas"] == {"fake_requests_total": 12.0}
    assert (out / "summary.md").read_text().startswith("# Load test summary")
    assert (out / "latency_cdf.png").stat().st_size > 0
    assert (out / "throughput.png").stat().st_size > 0


def test_a_rate_sweep_plots_latency_against_load(fake_server, tmp_path: Path) -> None:
    server = fake_server()
    out = tmp_path / "sweep"
    assert main(["--url", server.url, "--rates", "20,40", "--num-requests", "10",
                 "--output-dist", "fixed", "--output-mean", "6", "--input-dist", "fixed",
                 "--input-mean", "10", "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert [p["load"] for p in doc["sweep"]] == [20.0, 40.0]
    assert (out / "latency_vs_load.png").stat().st_size > 0
