"""Chain hashes of fixed-size token blocks: the unit of prefix identity.

The engine's radix cache labels every cached KV page with the chain hash of its block, and the
router computes the same hashes from a request's token ids to find the replica that already
holds its prefix. Both sides must agree bit for bit across processes and machines, so the hash
is BLAKE2b over a fixed byte layout, never Python's salted `hash()`.

Layout of one block's hash input: the parent hash as 8 little-endian bytes, then each token id
as a little-endian uint32. The digest is 8 bytes, read as a little-endian unsigned integer. The
first block's parent is `ROOT_HASH` (0).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence

ROOT_HASH = 0


def hash_block(parent: int, block: Sequence[int]) -> int:
    """The chain hash of one block of token ids whose predecessors hash to `parent`.

    Returns an unsigned 64-bit integer. Token ids must fit in uint32.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(parent.to_bytes(8, "little"))
    h.update(struct.pack(f"<{len(block)}I", *block))
    return int.from_bytes(h.digest(), "little")


def block_hashes(token_ids: Sequence[int], page_size: int, parent: int = ROOT_HASH) -> list[int]:
    """Chain hashes of every full `page_size` block of `token_ids`, in order.

    Block i hashes `(hash of block i-1, block i's token ids)`; block 0 chains from `parent`, so a
    caller can continue a chain it computed earlier. A trailing partial block has no hash: only
    full pages are ever cached.
    """
    if page_size < 1:
        raise ValueError(f"page_size={page_size} must be at least 1")
    hashes: list[int] = []
    for start in range(0, len(token_ids) - page_size + 1, page_size):
        parent = hash_block(parent, token_ids[start : start + page_size])
        hashes.append(parent)
    return hashes


def held_prefix(hashes: Sequence[int], holds: Callable[[int], bool]) -> int:
    """How many leading blocks of a chain `holds` says are held, for a store that holds a block
    only with all its predecessors (a chain hash names the whole prefix): presence is monotone
    along the chain, so a binary search, O(log n) lookups."""
    lo, hi = 0, len(hashes)  # invariant: the first lo blocks are held; block hi-1+ unknown
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if holds(hashes[mid - 1]):
            lo = mid
        else:
            hi = mid - 1
    return lo
