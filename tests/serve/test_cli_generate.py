"""`r1serve tiny-model` and `r1serve generate --json` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def r1serve(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_tiny_model_then_generate_prints_one_json_object(tmp_path):
    ckpt = tmp_path / "tiny"
    made = r1serve("tiny-model", str(ckpt), "--seed", "3", "--dtype", "fp8")
    assert made.returncode == 0, made.stderr
    assert (ckpt / "config.json").exists() and (ckpt / "tokenizer.json").exists()
    res = r1serve("generate", "--model", str(ckpt), "--messages",
                  '[{"role": "user", "content": "Hi there"}]', "--max-tokens", "5",
                  "--logprobs", "--json")
    assert res.returncode == 0, res.stderr
    out = last_json(res.stdout)
    assert len(out["token_ids"]) == len(out["logprobs"]) <= 5
    assert out["finish_reason"] in ("stop", "length")
    assert all(lp <= 0 for lp in out["logprobs"])


def test_prompt_ids_are_used_as_given_and_greedy_is_repeatable(tiny_fp32_dir):
    args = ("generate", "--model", str(tiny_fp32_dir), "--prompt-ids", "0,17,300,42",
            "--max-tokens", "6", "--json")
    a, b = r1serve(*args), r1serve(*args)
    assert a.returncode == 0, a.stderr
    first, second = last_json(a.stdout), last_json(b.stdout)
    assert first == second
    assert first["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize("bad, message", [
    (("--prompt-ids", "1,2,999999"), "outside the vocabulary"),
    (("--prompt-ids", "1,x"), "comma-separated integers"),
    (("--messages", "not json"), "not valid JSON"),
])
def test_bad_input_is_a_clear_error(tiny_fp32_dir, bad, message):
    res = r1serve("generate", "--model", str(tiny_fp32_dir), *bad, "--json")
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_checkpoint_names_the_file(tmp_path):
    res = r1serve("generate", "--model", str(tmp_path / "nowhere"), "--prompt", "hi")
    assert res.returncode == 2
    assert "config.json" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.multinode
def test_expert_parallel_generate_with_an_eplb_placement_matches_one_rank(tiny_fp32_dir,
                                                                          tmp_path):
    """The operator's loop: count expert load, balance it with `r1serve eplb`, run EP=4 over
    two simulated nodes from the saved placement; the tokens equal one rank's."""
    prompt = ("--prompt-ids", "0,17,300,42,9,1234,77,5,801,33", "--max-tokens", "8", "--json")
    counts = tmp_path / "counts.json"
    one = r1serve("generate", "--model", str(tiny_fp32_dir), *prompt,
                  "--save-expert-counts", str(counts))
    assert one.returncode == 0, one.stderr
    per_layer = json.loads(counts.read_text())["counts"]
    assert len(per_layer) == 3 and all(len(layer) == 16 for layer in per_layer)
    # every token processed (10 prompt + 7 fed back) picked 4 experts in every MoE layer
    assert all(sum(layer) == (10 + 7) * 4 for layer in per_layer)
    placement = tmp_path / "placement.json"
    plan = r1serve("eplb", "--load", str(counts), "--ep", "4", "--nodes", "2",
                   "--redundant", "4", "--groups", "4", "--out", str(placement))
    assert plan.returncode == 0, plan.stderr
    four = r1serve("generate", "--model", str(tiny_fp32_dir), *prompt, "--ep", "4",
                   "--nodes", "2", "--placement", str(placement), timeout=400)
    assert four.returncode == 0, four.stderr[-2000:]
    assert last_json(four.stdout)["token_ids"] == last_json(one.stdout)["token_ids"]
