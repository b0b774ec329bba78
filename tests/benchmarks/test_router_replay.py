"""The trace-replay benchmark's command line: bad arguments fail before the long run."""

from __future__ import annotations

import pytest

from benchmarks.router_replay import (
    Explained,
    Row,
    Sample,
    against_best,
    hit_rate_by_seed,
    main,
    seed_spread,
)
from sim.baseline_routers import RoundRobin
from sim.fleet import Fleet, FleetConfig
from sim.replica_model import SimRequest


@pytest.mark.parametrize(("argv", "named"), [
    (["--start", "99999"], "--start 99999 is past the trace's last request; it holds 12031"),
    (["--routers", "ours,random"], "--routers: unknown random"),
    (["--requests", "0"], "--requests 0"),
    (["--windows", "0"], "--windows 0"),
    (["--seeds", "0"], "--seeds 0: replay with at least 1 seed"),
    (["--windows", "6"], "--windows 6 (the last from request 15000) is past the trace's last"),
    (["--knob", "no_such_knob=1"], "no_such_knob"),
    (["--scenario", "4:r1:cpu"], "--scenario: unknown 4:r1:cpu; choose from 4:trace:gpu,"),
])
def test_bad_arguments_name_what_to_change(argv, named, capsys):
    with pytest.raises((SystemExit, ValueError)) as e:
        main(argv)
    said = capsys.readouterr().err + str(e.value)
    assert named in said


def test_windows_pool_tokens_busy_time_and_every_ttft():
    a = Sample("ours", 0, prompt_tokens=1000, cached_tokens=100, ttfts=(1.0, 2.0),
               busy_s=(10.0, 30.0))
    b = Sample("ours", 0, prompt_tokens=3000, cached_tokens=900, ttfts=(3.0, 4.0),
               busy_s=(30.0, 10.0))
    row = Row.pooled([a, b])
    # 1,000 cached of 4,000, not the mean of 10% and 30%; busy 40 and 40 balance exactly.
    assert (row.hit_rate, row.ttft_p50, row.ttft_p99, row.imbalance) == (0.25, 3.0, 4.0, 1.0)


def test_a_replay_pools_its_windows(capsys):
    main(["--requests", "20", "--windows", "2", "--routers", "round-robin", "--jobs", "1"])
    out = capsys.readouterr().out
    assert "requests 0-39 in 2 windows from cold caches" in out
    assert out.count("round-robin") == 8  # one pooled row per scenario


def test_each_seed_pools_its_own_windows():
    def sample(seed: int, prompt: int, cached: int) -> Sample:
        return Sample("ours", seed, prompt, cached, ttfts=(1.0,), busy_s=(1.0,))
    samples = [sample(0, 1000, 100), sample(1, 1000, 500), sample(0, 3000, 900)]
    # seed 0: 1,000 cached of 4,000; seed 1: 500 of 1,000
    assert hit_rate_by_seed(samples) == {0: 0.25, 1: 0.5}
    # standard deviation 0.1768 of two seeds, over the square root of 2: 0.125
    assert seed_spread(samples).split() == ["25.00%-50.00%", "12.50%"]


def _seeds(router: str, cached: list[int], p99: float) -> list[Sample]:
    """One window of 1,000 prompt tokens per seed, its TTFTs ending at `p99`."""
    return [Sample(router, seed, 1000, c, ttfts=(0.5, p99), busy_s=(1.0,))
            for seed, c in enumerate(cached)]


def test_the_target_compares_ours_with_the_best_other_seed_by_seed():
    ours = _seeds("ours", [300, 320, 310], p99=2.0)
    others = {"ray": _seeds("ray", [290, 300, 300], p99=3.0),  # the best hit rate
              "smg": _seeds("smg", [100, 100, 100], p99=2.5)}  # the lowest p99 of the two
    # paired differences 1, 2 and 1 points: mean 1.33, s.e. 0.33; ours leads by 4 s.e.
    assert against_best(ours, others) == (
        "hit rate +1.33 points against ray, s.e. 0.33 (ahead); "
        "TTFT p99 lowest, 0.50s below smg")
    # a lead the seeds disagree on (4, -2 and 1 points) is a tie; a loss beyond 2 s.e. is behind
    ours = _seeds("ours", [330, 280, 310], p99=2.0)
    assert "+1.00 points against ray, s.e. 1.73 (a tie within 2 s.e.)" in against_best(
        ours, others)
    ours = _seeds("ours", [200, 210, 200], p99=2.6)
    assert against_best(ours, others) == (
        "hit rate -9.33 points against ray, s.e. 0.33 (behind); "
        "TTFT p99 not lowest, 0.10s above smg")
    # one seed gives no standard error and no verdict on the hit rate
    assert against_best(ours[:1], {"ray": others["ray"][:1]}).startswith(
        "hit rate -9.00 points against ray; TTFT p99")


def test_a_replay_with_ours_and_others_prints_the_target(capsys):
    main(["--requests", "20", "--seeds", "2", "--routers", "ours,round-robin", "--jobs", "1",
          "--scenario", "4:trace:gpu"])
    target = [line for line in capsys.readouterr().out.splitlines() if "target" in line]
    assert len(target) == 1
    assert target[0].startswith("  target, ours: hit rate ")
    assert "points against round-robin, s.e. " in target[0]


def test_a_replay_with_several_seeds_prints_their_spread(capsys):
    main(["--requests", "20", "--seeds", "2", "--seed", "3", "--routers", "power-of-two",
          "--jobs", "1"])
    out = capsys.readouterr().out
    assert "requests 0-19, seeds 3-4;" in out
    assert out.count("seed low-high") == 8
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("power-of-two")]
    assert len(rows) == 8
    for row in rows:
        low, high = (float(x.rstrip("%")) for x in row[-2].split("-"))
        assert low <= float(row[1].rstrip("%")) <= high
        assert 0 <= float(row[-1].rstrip("%")) <= high - low


def test_a_replay_can_take_part_of_the_grid(capsys):
    main(["--requests", "20", "--routers", "round-robin", "--jobs", "1",
          "--scenario", "16:r1:gpu+host", "--scenario", "4:trace:gpu"])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "replicas," in line] == [
        "16 replicas, r1    outputs, gpu+host cache", " 4 replicas, trace outputs, gpu      cache"]
    assert out.count("round-robin") == 2


def _explain(replicas: int, requests: list[tuple[float, int]]) -> tuple[int, int, int, int]:
    """Round robin over `replicas` for (arrival, blocks) prompts of 512-token blocks whose
    block ids run 1, 2, ... so each prompt extends the one before; returns prompt tokens, held
    anywhere, held where sent and found at prefill."""
    reqs = [SimRequest(i, t, n * 512, 1, tuple(range(1, n + 1)))
            for i, (t, n) in enumerate(requests)]
    watched = Explained(RoundRobin())
    done = Fleet(reqs, watched, FleetConfig(initial_replicas=replicas)).run().requests
    return (sum(r.prompt_tokens for r in done), watched.held_anywhere,
            watched.held_where_sent, sum(r.cached_tokens for r in done))


def test_explain_tells_what_routing_gave_away_from_what_queueing_did():
    # Round robin alternates replicas 1, 0, 1: the second prompt leaves its three cached blocks
    # behind; the third finds four on replica 0 but is sent back to replica 1, which has three.
    assert _explain(2, [(0.0, 3), (100.0, 4), (200.0, 5)]) == (
        6144, 0 + 1536 + 2048, 0 + 0 + 1536, 1536)
    # On one replica a prompt sent while the one it extends is still in prefill finds nothing
    # cached when routed, yet all three blocks when its own prefill begins.
    assert _explain(1, [(0.0, 3), (0.001, 4)]) == (3584, 0, 0, 1536)


def test_a_replay_explains_every_router(capsys):
    main(["--requests", "200", "--routers", "ours,round-robin", "--jobs", "1",
          "--scenario", "4:trace:gpu", "--explain"])
    out = capsys.readouterr().out.splitlines()
    head = out.index("  prompt tokens held   anywhere where sent at prefill")
    hit = {line.split()[0]: line.split()[1] for line in out[head - 3:head - 1]}
    held = {line.split()[0]: [float(x.rstrip("%")) for x in line.split()[1:]]
            for line in out[head + 1:head + 3]}
    assert set(held) == set(hit) == {"ours", "round-robin"}
    for router, (_, _, prefill) in held.items():
        assert f"{prefill:.2f}%" == hit[router]  # found at prefill is the hit rate
    # round robin ignores the caches, so it sends requests away from prefixes held elsewhere
    anywhere, where_sent, _ = held["round-robin"]
    assert anywhere > where_sent
