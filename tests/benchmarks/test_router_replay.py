"""The trace-replay benchmark's command line: bad arguments fail before the long run."""

from __future__ import annotations

import pytest

from benchmarks.router_replay import Row, Sample, main


@pytest.mark.parametrize(("argv", "named"), [
    (["--start", "99999"], "--start 99999 is past the trace's last request; it holds 12031"),
    (["--routers", "ours,random"], "--routers: unknown random"),
    (["--requests", "0"], "--requests 0"),
    (["--windows", "0"], "--windows 0"),
    (["--windows", "6"], "--windows 6 (the last from request 15000) is past the trace's last"),
    (["--knob", "no_such_knob=1"], "no_such_knob"),
])
def test_bad_arguments_name_what_to_change(argv, named, capsys):
    with pytest.raises((SystemExit, ValueError)) as e:
        main(argv)
    said = capsys.readouterr().err + str(e.value)
    assert named in said


def test_windows_pool_tokens_busy_time_and_every_ttft():
    a = Sample("ours", prompt_tokens=1000, cached_tokens=100, ttfts=(1.0, 2.0), busy_s=(10.0, 30.0))
    b = Sample("ours", prompt_tokens=3000, cached_tokens=900, ttfts=(3.0, 4.0), busy_s=(30.0, 10.0))
    row = Row.pooled([a, b])
    # 1,000 cached of 4,000, not the mean of 10% and 30%; busy 40 and 40 balance exactly.
    assert (row.hit_rate, row.ttft_p50, row.ttft_p99, row.imbalance) == (0.25, 3.0, 4.0, 1.0)


def test_a_replay_pools_its_windows(capsys):
    main(["--requests", "20", "--windows", "2", "--routers", "round-robin", "--jobs", "1"])
    out = capsys.readouterr().out
    assert "requests 0-39 in 2 windows from cold caches" in out
    assert out.count("round-robin") == 8  # one pooled row per scenario
