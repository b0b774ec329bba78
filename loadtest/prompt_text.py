"""Deterministic synthetic prompt text at roughly one token per word.

The approximation: every word is a short, common, lowercase English word preceded by a space.
Byte-level BPE tokenizers (DeepSeek-V3/R1, Llama, GPT) hold each of these as a single token, and a
space-led word cannot merge with its neighbour, so `n` words are close to `n` tokens and a block's
tokens do not depend on what precedes it. Chat templates add a few tokens per message on top. The
run measures the approximation: `summary.prompt_tokens_ratio` is the server's
`usage.prompt_tokens` over our estimate.
"""

from __future__ import annotations

import hashlib
import random

# Lowercase, space-led, common: single tokens in the BPE vocabularies we care about.
WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    """the of and to in is it that for on with as was at by be this from or have an they
    which one you had not but what all were when we there can can more if out so said
    up its about into than them only some could time these two may first then do any like
    my now over such our man me even most made after also did many before must through back
    years where much your way well down should because each just those people how too little
    state good very make world still own see men work long get here between both life being
    under never day same another know while last might us great old year off come since
    against go came right used take three states himself few house use during without again
    place around however home small found thought went say part once general high upon
    school every don does got united left number course war until always away something fact
    though water less public put think almost hand enough far took head yet government
    system better set told nothing night end why called eyes find going look asked
    later knew point next city business give group toward young let room president side
    social given present several order national possible rather second face per among form
    important often things looked early white case john become large big need four within
    felt along children saw best church ever least power development light seemed family
    interest want members mind country area others done turned although open god service
    problem certain kind different thus began door help sense means whole matter perhaps
    itself york times law human line above name example action company hands local show
    whether five history gave today either act feet across taken past quite anything having
    seen death experience body word half really field am car words already themselves
    information tell together college shall money period held keep sure real probably free
    seems political cannot behind miss question air office making brought whose special
    major heard problems federal became study ago moment available known result street
    economic boy position reason change south board individual job areas society west close
    turn love community true court force full seem policy""".split()
))


def words(seed: str, count: int) -> list[str]:
    """`count` words drawn deterministically from `seed`: equal seeds give equal text."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    return rng.choices(WORDS, k=count)


def text(seed: str, approx_tokens: int) -> str:
    """Text of about `approx_tokens` tokens, a pure function of (`seed`, `approx_tokens`)."""
    return "".join(" " + w for w in words(seed, approx_tokens))


def block_text(hash_id: int, tokens: int, block_size: int = 512) -> str:
    """The text of one prefix-cache block named by a trace hash id.

    A block is a prefix of the hash id's full-block text, so a partial last block is consistent
    with the full block of the same id, and equal ids always give equal text.
    """
    assert 0 < tokens <= block_size, "a block holds at most block_size tokens"
    return "".join(" " + w for w in words(f"block-{hash_id}", block_size)[:tokens])
