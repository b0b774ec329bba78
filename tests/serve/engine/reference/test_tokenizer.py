"""The tokenizer and chat template, checked against transformers on the tiny checkpoint."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from serve.engine.reference.tokenizer import Tokenizer
from serve.errors import CheckpointError

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
SPECIAL = (
    BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
)


@pytest.fixture(scope="module")
def tok(tiny_fp32_dir: Path) -> Tokenizer:
    return Tokenizer.from_dir(tiny_fp32_dir)


@pytest.fixture(scope="module")
def hf_tok(tiny_fp32_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_fp32_dir)


def _call(i: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{i}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


CHATS: dict[str, list[dict[str, Any]]] = {
    "system+user": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2? 🤔"},
    ],
    "two-systems": [
        {"role": "system", "content": "Rule one."},
        {"role": "system", "content": "Rule two."},
        {"role": "user", "content": "你好"},
    ],
    "multi-turn-with-reasoning": [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "<think>\n2 is prime.\n</think>\n\nTwo."},
        {"role": "user", "content": "Another?"},
    ],
    "tool-calls": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        # transformers drops None-valued keys, which R1's template cannot render; "" takes
        # the same branch as the None that OpenAI clients send (test_tool_call_content_none).
        {"role": "assistant", "content": "", "tool_calls": [
            _call(0, "get_weather", {"city": "Paris"}),
            _call(1, "get_weather", {"city": "Rome"}),
        ]},
        {"role": "tool", "tool_call_id": "call_0", "content": "12°C, rain"},
        {"role": "tool", "tool_call_id": "call_1", "content": "21°C, sun"},
    ],
    "tool-calls-then-answer": [
        {"role": "user", "content": "Time in Tokyo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            _call(0, "now", {"tz": "Asia/Tokyo"}),
        ]},
        {"role": "tool", "tool_call_id": "call_0", "content": "09:30"},
        {"role": "assistant", "content": "It is 09:30 in Tokyo."},
        {"role": "user", "content": "Thanks!"},
    ],
}


def test_special_tokens(tok: Tokenizer, tiny_fp32_dir: Path) -> None:
    assert tok.bos_token_id == 0 and tok.eos_token_id == 1
    ids = [tok.token_to_id(t) for t in SPECIAL]
    assert None not in ids and set(ids) == tok.special_token_ids
    assert tok.id_to_token(0) == BOS and tok.id_to_token(1) == EOS
    assert tok.id_to_token(tok.think_start_id) == "<think>"
    assert tok.id_to_token(tok.think_end_id) == "</think>"
    assert {tok.think_start_id, tok.think_end_id}.isdisjoint(tok.special_token_ids)
    assert 3000 <= tok.vocab_size <= 5000
    config = json.loads((tiny_fp32_dir / "config.json").read_text())
    assert config["vocab_size"] == tok.vocab_size


def test_decode_keeps_think_tags_and_drops_specials(tok: Tokenizer) -> None:
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    ids += tok.encode("reasoning</think>answer", add_bos=False) + [tok.eos_token_id]
    assert tok.decode(ids) == "hi<think>\nreasoning</think>answer"
    assert tok.decode(ids, skip_special_tokens=False) == (
        f"{BOS}<｜User｜>hi<｜Assistant｜><think>\nreasoning</think>answer{EOS}")


@pytest.mark.parametrize("name", sorted(CHATS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(tok: Tokenizer, hf_tok: Any, name: str,
                                            add_generation_prompt: bool) -> None:
    messages = CHATS[name]
    want = hf_tok.apply_chat_template(messages, tokenize=False,
                                      add_generation_prompt=add_generation_prompt)
    assert tok.render_chat(messages, add_generation_prompt) == want
    want_ids = hf_tok.apply_chat_template(messages, tokenize=True,
                                          add_generation_prompt=add_generation_prompt)
    want_ids = list(want_ids["input_ids"] if hasattr(want_ids, "keys") else want_ids)
    got = tok.apply_chat_template(messages, add_generation_prompt)
    assert got == want_ids
    assert got.count(tok.bos_token_id) == 1 and got[0] == tok.bos_token_id


def test_tool_call_content_none(tok: Tokenizer) -> None:
    """OpenAI clients send content=None beside tool_calls; R1's template handles it."""
    messages = [dict(m) for m in CHATS["tool-calls"]]
    messages[1]["content"] = None
    text = tok.render_chat(messages)
    assert text == tok.render_chat(CHATS["tool-calls"])
    assert '<｜tool▁sep｜>get_weather\n```json\n{"city": "Rome"}\n```' in text


def test_generation_prompt_opens_thinking(tok: Tokenizer) -> None:
    text = tok.render_chat(CHATS["multi-turn-with-reasoning"])
    assert text.startswith(BOS) and text.endswith("<｜Assistant｜><think>\n")
    assert "2 is prime" not in text  # earlier reasoning is dropped from the history
    ids = tok.apply_chat_template(CHATS["multi-turn-with-reasoning"])
    assert ids[-3:-1] == [tok.token_to_id("<｜Assistant｜>"), tok.think_start_id]


def test_encode_adds_one_bos(tok: Tokenizer) -> None:
    assert tok.encode("hello")[0] == tok.bos_token_id
    assert tok.encode("hello", add_bos=False)[0] != tok.bos_token_id
    assert tok.encode(BOS + "hello") == tok.encode("hello")
    assert tok.encode(BOS + "hello", add_bos=True).count(tok.bos_token_id) == 1


def _random_text(rng: random.Random) -> str:
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x300, 0x36F), (0x391, 0x3C9),
              (0x400, 0x4FF), (0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3),
              (0x1F300, 0x1FAFF), (0xE000, 0xF8FF), (0x10000, 0x10FFFF)]
    chars = []
    for _ in range(rng.randint(1, 80)):
        lo, hi = rng.choice(ranges)
        chars.append(chr(rng.randint(lo, hi)))
    chars.append(rng.choice(["", " ", "  ", "\n", "\t", "👩‍💻", "🇯🇵", "é", "e\u0301"]))
    rng.shuffle(chars)
    return "".join(chars)


def test_encode_decode_round_trips_unicode(tok: Tokenizer, hf_tok: Any) -> None:
    rng = random.Random(7)
    for _ in range(300):
        text = _random_text(rng)
        ids = tok.encode(text, add_bos=False)
        assert tok.decode(ids) == text
        assert ids == hf_tok.encode(text, add_special_tokens=False)
    fixed = "Grüße, 世界! 🦜🦜 <think>x</think> ∑ 𝔘𝔫𝔦 \x00 \r\n"
    assert tok.decode(tok.encode(fixed)) == fixed


def test_missing_tokenizer_files_are_checkpoint_errors(tiny_fp32_dir: Path,
                                                       tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        root = tmp_path / name
        root.mkdir()
        for other in ("tokenizer.json", "tokenizer_config.json"):
            if other != name:
                shutil.copy(tiny_fp32_dir / other, root)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            Tokenizer.from_dir(root)
