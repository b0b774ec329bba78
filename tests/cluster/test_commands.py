"""`r1serve eplb` and `r1serve plan` through argparse, as `r1serve` wires them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cluster.commands import add_eplb_parser, add_plan_parser
from cluster.eplb import max_mean_ratio, synthetic_counts
from cluster.expert_placement import ExpertPlacement


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="r1serve")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eplb_parser(sub)
    add_plan_parser(sub)
    ns = parser.parse_args(argv)
    return ns.func(ns)


def test_eplb_from_a_counts_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = synthetic_counts(4, 256, seed=1, skew=1.0)
    load = tmp_path / "counts.json"
    load.write_text(json.dumps({"counts": counts.tolist()}))
    out = tmp_path / "placement.json"
    rc = _run(["eplb", "--load", str(load), "--ep", "32", "--nodes", "4", "--redundant", "32",
               "--groups", "8", "--out", str(out)])
    assert rc == 0
    placement = ExpertPlacement.from_json(out.read_text())
    assert (placement.num_layers, placement.num_ranks, placement.slots_per_rank) == (4, 32, 9)
    printed = capsys.readouterr().out
    eplb_row = next(line for line in printed.splitlines() if line.startswith("eplb"))
    contiguous_row = next(line for line in printed.splitlines()
                          if line.startswith("contiguous"))
    assert float(eplb_row.split()[1]) == pytest.approx(max_mean_ratio(placement, counts),
                                                       abs=1e-3)
    assert float(eplb_row.split()[1]) < 1.1 < float(contiguous_row.split()[1])
    assert f"wrote {out}" in printed


def test_eplb_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    rc = _run(["eplb", "--synthetic-layers", "6", "--synthetic-experts", "256", "--seed", "0",
               "--ep", "16", "--nodes", "2", "--redundant", "16", "--out", str(out)])
    assert rc == 0
    assert ExpertPlacement.from_json(out.read_text()).num_layers == 6
    assert "contiguous" in capsys.readouterr().out


def test_eplb_load_help_documents_the_counts_format(capsys) -> None:
    with pytest.raises(SystemExit):
        _run(["eplb", "--help"])
    assert '{"counts":' in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not valid JSON"),
    ('{"per_layer": []}', '"counts"'),
    ('{"counts": [[1, 2], [3]]}', "equal-length"),
    ('{"counts": [[1, -2]]}', "non-negative"),
])
def test_eplb_bad_counts_file_exits_2(tmp_path: Path, capsys, content: str, message: str) -> None:
    load = tmp_path / "counts.json"
    load.write_text(content)
    assert _run(["eplb", "--load", str(load), "--ep", "2", "--nodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1serve eplb: error:") and message in err


def test_eplb_bad_layout_exits_2(capsys) -> None:
    rc = _run(["eplb", "--synthetic-layers", "2", "--ep", "32", "--nodes", "4",
               "--redundant", "30"])
    assert rc == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_eplb_missing_counts_file_exits_2(tmp_path: Path, capsys) -> None:
    assert _run(["eplb", "--load", str(tmp_path / "nope.json"), "--ep", "8", "--nodes", "1"]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_plan_fits_on_8_h200(capsys) -> None:
    assert _run(["plan", "--gpu", "h200-141g", "--gpus-per-node", "8", "--nodes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "fits                      yes" in printed
    assert "70,272" in printed and "671,026,419,200" in printed


def test_plan_does_not_fit_on_8_h100(capsys) -> None:
    assert _run(["plan", "--gpu", "h100-80g", "--nodes", "1", "--dp-attention"]) == 1
    printed = capsys.readouterr().out
    assert "does not fit: weights need" in printed
    assert "smallest layout that fits: 2 node(s) x 8 GPUs = 16 GPUs" in printed


def test_plan_json(capsys) -> None:
    rc = _run(["plan", "--gpu", "h100-80g", "--nodes", "2", "--kv-dtype", "fp8",
               "--context", "65536", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"] is True and doc["kv_bytes_per_token"] == 35_136
    assert doc["layout"]["num_gpus"] == 16 and doc["layout"]["context"] == 65_536
    assert doc["max_concurrent_requests"] == doc["kv_cache_tokens"] // 65_536
    for key in ("parameters", "weight_bytes_per_gpu", "kv_cache_tokens", "reason"):
        assert key in doc


def test_plan_json_when_it_does_not_fit(capsys) -> None:
    assert _run(["plan", "--gpu", "h800-80g", "--nodes", "1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"] is False and doc["reason"]
    assert doc["smallest_fitting"]["nodes"] == 2


def test_plan_with_a_config_file(tmp_path: Path, capsys) -> None:
    # A model with half the routed experts is smaller: it fits where R1 does not.
    shipped = Path(__file__).resolve().parents[2] / "cluster/data/deepseek_r1_config.json"
    config = json.loads(shipped.read_text())
    config["n_routed_experts"] = 128
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert _run(["plan", "--gpu", "h100-80g", "--nodes", "1", "--config", str(path)]) == 0
    assert "fits                      yes" in capsys.readouterr().out


def test_plan_invalid_layout_exits_2(capsys) -> None:
    assert _run(["plan", "--gpu", "h200-141g", "--nodes", "1", "--ep", "3"]) == 2
    assert "r1serve plan: error: EP size 3" in capsys.readouterr().err


def test_plan_bad_config_exits_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    assert _run(["plan", "--gpu", "h200-141g", "--nodes", "1", "--config", str(path)]) == 2
    assert "expected a config.json object" in capsys.readouterr().err


def test_counts_round_trip_through_numpy(tmp_path: Path) -> None:
    # Counts may be floats (e.g. averaged over a window); the file format accepts them.
    load = tmp_path / "counts.json"
    load.write_text(json.dumps({"counts": (np.ones((2, 16)) * 1.5).tolist()}))
    assert _run(["eplb", "--load", str(load), "--ep", "4", "--nodes", "2", "--groups", "4"]) == 0
