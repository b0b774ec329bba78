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
