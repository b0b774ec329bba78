"""The stream adapter on SGLang's cumulative streams (data/*.json), recorded from SGLang 0.5.23's
own detokenizer and tokenizer manager by `scripts/record_sglang_streams.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.engine.sglang.stream_adapter import StreamAdapter
from serve.errors import InvalidRequestError

DATA = Path(__file__).parent / "data"
RECORDINGS = sorted(p for p in DATA.glob("*.json") if "raises" not in json.loads(p.read_text()))


def _run(recording: dict) -> list:
    req = recording["request"]
    adapter = StreamAdapter("req-1", stop=req["stop"], logprobs=req["logprobs"],
                            prompt_tokens=req["prompt_tokens"])
    return [d for d in (adapter.feed(c) for c in recording["chunks"]) if d is not None]


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_recorded_stream_gives_expected_deltas(path: Path) -> None:
    recording = json.loads(path.read_text())
    deltas = _run(recording)
    got = [{"token_ids": list(d.token_ids), "text": d.text, "finish_reason": d.finish_reason}
           for d in deltas]
    want = [{k: e[k] for k in ("token_ids", "text", "finish_reason")}
            for e in recording["expected"]]
    assert got == want
    # What a client concatenates is exactly SGLang's final text, and never a broken char.
    assert "".join(d.text for d in deltas) == recording["final_text"]
    assert all("\ufffd" not in d.text for d in deltas)
    # Token ids concatenate to the final output ids, each once.
    assert [t for d in deltas for t in d.token_ids] == recording["chunks"][-1]["output_ids"]
    last = deltas[-1]
    assert last.usage is not None and vars(last.usage) == recording["usage"]
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])


def test_logprobs_follow_tokens() -> None:
    recording = json.loads((DATA / "length_logprobs.json").read_text())
    deltas = _run(recording)
    for delta, want in zip(deltas, recording["expected"], strict=True):
        got = [[lp.token_id, lp.logprob, [list(t) for t in lp.top]] for lp in delta.logprobs]
        assert got == want["logprobs"]
        assert [lp.token_id for lp in delta.logprobs] == list(delta.token_ids)


def test_the_start_of_a_stop_string_sglang_streamed_never_reaches_the_client() -> None:
    """SGLang streamed '</' before '</answer>' completed and keeps it in its final text."""
    recording = json.loads((DATA / "stop_string.json").read_text())
    assert recording["chunks"][-1]["text"].endswith("answer</")
    assert "".join(d.text for d in _run(recording)).endswith("the answer")


def test_an_abort_in_sglangs_queue_counts_the_prompt_sent() -> None:
    """SGLang's waiting-queue abort reports no prompt_tokens: usage counts r1serve's prompt."""
    recording = json.loads((DATA / "queued_abort.json").read_text())
    assert "prompt_tokens" not in recording["chunks"][-1]["meta_info"]
    (last,) = _run(recording)
    assert last.finish_reason == "abort"
    assert last.usage is not None and last.usage.prompt_tokens == 9 > 0


def test_rejection_before_output_raises_invalid_request() -> None:
    recording = json.loads((DATA / "rejected.json").read_text())
    adapter = StreamAdapter("req-1")
    with pytest.raises(InvalidRequestError, match="context length"):
        adapter.feed(recording["chunks"][0])


def test_server_error_abort_maps_to_error_with_message() -> None:
    adapter = StreamAdapter("r")
    adapter.feed({"text": "a", "output_ids": [1], "meta_info": {"finish_reason": None}})
    last = adapter.feed({"text": "a", "output_ids": [1], "meta_info": {
        "finish_reason": {"type": "abort", "message": "scheduler died", "status_code": 500},
        "prompt_tokens": 3, "completion_tokens": 1, "cached_tokens": 0}})
    assert last.finish_reason == "error" and last.error == "scheduler died"


def test_stop_string_left_in_final_text_is_cut() -> None:
    """With no_stop_trim (or a stop string SGLang matched across tokens differently) the final
    text may still hold the stop string: it never reaches the client."""
    adapter = StreamAdapter("r", stop=("###",))
    d1 = adapter.feed({"text": "abc##", "output_ids": [1, 2], "meta_info": {}})
    d2 = adapter.feed({"text": "abc###tail", "output_ids": [1, 2, 3], "meta_info": {
        "finish_reason": {"type": "stop", "matched": "###"}}})
    assert d1.text + d2.text == "abc" and d2.finish_reason == "stop"


def test_final_text_may_end_in_replacement_char() -> None:
    """A generation cut by max_tokens inside a character ends with U+FFFD, as the final text
    does; only intermediate text is held back."""
    adapter = StreamAdapter("r")
    d1 = adapter.feed({"text": "ok\ufffd", "output_ids": [1, 2], "meta_info": {}})
    d2 = adapter.feed({"text": "ok\ufffd", "output_ids": [1, 2], "meta_info": {
        "finish_reason": {"type": "length", "length": 2}}})
    assert (d1.text, d2.text, d2.finish_reason) == ("ok", "\ufffd", "length")


def test_chunk_after_final_is_a_bug() -> None:
    adapter = StreamAdapter("r")
    adapter.feed({"text": "", "output_ids": [1], "meta_info": {
        "finish_reason": {"type": "stop", "matched": 1}}})
    with pytest.raises(RuntimeError):
        adapter.feed({"text": "", "output_ids": [1], "meta_info": {}})


def test_output_ids_list_reused_by_sglang_is_copied() -> None:
    """SGLang hands out its own growing list in intermediate chunks."""
    ids = [7]
    adapter = StreamAdapter("r")
    d1 = adapter.feed({"text": "x", "output_ids": ids, "meta_info": {}})
    ids.append(8)
    assert d1.token_ids == (7,)
    d2 = adapter.feed({"text": "xy", "output_ids": ids, "meta_info": {}})
    assert d2.token_ids == (8,)


def test_recordings_are_what_sglang_emits() -> None:
    """Replays each recording's scheduler steps through SGLang's own detokenizer and tokenizer
    manager; needs SGLang with its full dependencies, as in the serving image."""
    pytest.importorskip("sglang.srt.managers.tokenizer_manager", exc_type=ImportError,
                        reason="needs SGLang with its full dependencies")
    pytest.importorskip("sglang.srt.managers.detokenizer_manager", exc_type=ImportError,
                        reason="needs SGLang with its full dependencies")
    import runpy

    recorder = runpy.run_path(str(Path(__file__).parents[4] / "scripts" /
                                  "record_sglang_streams.py"))
    assert recorder["main"](["--check"]) == 0
