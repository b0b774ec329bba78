"""The reasoning splitter: R1 output cut into reasoning and answer at `</think>`, however the
text is chunked, with reasoning tokens counted from the tag's token id."""

from __future__ import annotations

import itertools

import pytest

from serve.api.reasoning import ReasoningSplitter

END_ID = 5  # the tiny tokenizer's `</think>` id; any id works here


def split(pieces: list[str], token_ids: list[tuple[int, ...]] | None = None,
          check_leaks: bool = True):
    s = ReasoningSplitter(END_ID)
    reasoning, content = [], []
    ids = token_ids or [()] * len(pieces)
    for piece, tokens in zip(pieces, ids, strict=True):
        d = s.push(piece, tokens)
        # No piece of a tag may ever leak into either side.
        for text in (d.reasoning, d.content) if check_leaks else ():
            assert "<think" not in text and "</" not in text
        reasoning.append(d.reasoning)
        content.append(d.content)
    d = s.flush()
    reasoning.append(d.reasoning)
    content.append(d.content)
    return "".join(reasoning), "".join(content), s


def all_two_cuts(text: str):
    """Every way to cut `text` into up to three pieces."""
    for i, j in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        yield [text[:i], text[i:j], text[j:]]


@pytest.mark.parametrize("text", [
    "Let me think about 2+2.</think>\n\nThe answer is 4.",
    "<think>\nLet me think about 2+2.</think>\n\nThe answer is 4.",
    "\n<think>Let me think about 2+2.</think>The answer is 4.",
])
def test_split_at_every_position(text):
    for pieces in all_two_cuts(text):
        reasoning, content, s = split(pieces)
        assert (reasoning, content) == ("Let me think about 2+2.", "The answer is 4."), pieces
        assert s.answer_started


def test_one_character_at_a_time():
    text = "<think>\nab</think>\n\ncd"
    reasoning, content, _ = split(list(text))
    assert (reasoning, content) == ("ab", "cd")


def test_no_close_tag_means_all_reasoning_and_no_answer():
    for pieces in all_two_cuts("thinking and thinking </thi"):
        reasoning, content, s = split(pieces)
        # A partial tag at the end was not a tag: it is reasoning text, not lost.
        assert reasoning == "thinking and thinking </thi"
        assert content == ""
        assert not s.answer_started


def test_lookalike_tags_are_text():
    reasoning, content, s = split(["a </thinker> b <think", "s> c"], check_leaks=False)
    assert reasoning == "a </thinker> b <thinks> c"
    assert not s.answer_started
    reasoning, content, _ = split(["<thinking", " x"], check_leaks=False)
    assert reasoning == "<thinking x"


def test_only_newlines_after_close_are_stripped():
    assert split(["r</think>\n\n  answer\n"])[:2] == ("r", "  answer\n")
    assert split(["r</think>", "\n", "\n", "a"])[:2] == ("r", "a")


def test_empty_answer_is_not_a_missing_answer():
    reasoning, content, s = split(["r</think>\n\n"])
    assert (reasoning, content) == ("r", "")
    assert s.answer_started


def test_second_close_tag_belongs_to_the_answer():
    assert split(["r</think>a</think>b"], check_leaks=False)[:2] == ("r", "a</think>b")


def test_reasoning_tokens_count_through_the_close_tag():
    pieces = ["Let", " me", "</think>", "\n\n", "Four", "."]
    ids = [(10,), (11,), (END_ID,), (12,), (13,), (14,)]
    _, _, s = split(pieces, ids)
    assert (s.reasoning_tokens, s.answer_tokens, s.completion_tokens) == (3, 3, 6)


def test_reasoning_tokens_without_close_tag_are_all_tokens():
    _, _, s = split(["a", "b"], [(10,), (11, 12)])
    assert (s.reasoning_tokens, s.answer_tokens) == (3, 0)


def test_boundary_from_text_when_the_tag_is_not_one_token():
    # A tokenizer without a `</think>` token: the boundary is the delta that closed the tag.
    s = ReasoningSplitter(None)
    s.push("ab</th", (1, 2, 3))
    s.push("ink>c", (4, 5))
    s.push("d", (6,))
    assert (s.reasoning_tokens, s.answer_tokens) == (5, 1)
