"""Chain hashes of token blocks: stable across processes and shared with the router."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from serve.engine.block_hash import ROOT_HASH, block_hashes, hash_block, held_prefix


def _golden(parent: int, block: list[int]) -> int:
    digest = hashlib.blake2b(
        parent.to_bytes(8, "little") + struct.pack(f"<{len(block)}I", *block), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little")


def test_matches_the_documented_byte_layout() -> None:
    tokens = list(range(10))
    first = _golden(ROOT_HASH, [0, 1, 2, 3])
    second = _golden(first, [4, 5, 6, 7])
    assert block_hashes(tokens, 4) == [first, second]  # the partial block [8, 9] has no hash
    assert hash_block(ROOT_HASH, [0, 1, 2, 3]) == first


def test_golden_value_is_stable() -> None:
    # Pinned so that a change to the layout, which would silently break prefix routing between
    # old and new replicas, fails here.
    assert block_hashes([1, 2, 3, 4], 4) == [_golden(0, [1, 2, 3, 4])]
    assert hash_block(0, [1, 2, 3, 4]) == int.from_bytes(
        hashlib.blake2b(
            bytes(8) + bytes([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]), digest_size=8
        ).digest(),
        "little",
    )


def test_same_in_another_process() -> None:
    code = "from serve.engine.block_hash import block_hashes; print(block_hashes(range(64), 16))"
    repo_root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert out.stdout.strip() == str(block_hashes(range(64), 16))


def test_chain_depends_on_the_whole_prefix() -> None:
    a = block_hashes([1, 2, 3, 4, 5, 6], 3)
    b = block_hashes([9, 2, 3, 4, 5, 6], 3)
    assert a[1] != b[1]  # same second block, different first block


def test_continuing_a_chain_from_a_parent() -> None:
    tokens = list(range(100, 132))
    whole = block_hashes(tokens, 8)
    assert block_hashes(tokens[16:], 8, parent=whole[1]) == whole[2:]


def test_short_input_and_bad_page_size() -> None:
    assert block_hashes([1, 2, 3], 4) == []
    assert block_hashes([], 4) == []
    with pytest.raises(ValueError):
        block_hashes([1], 0)


@pytest.mark.parametrize("held", range(9))
def test_held_prefix_counts_the_leading_blocks_a_store_holds(held):
    chain = block_hashes(list(range(8 * 4)), 4)
    store = set(chain[:held])
    assert held_prefix(chain, store.__contains__) == held
    assert held_prefix((), store.__contains__) == 0
