"""The radix prefix cache: matching, ownership, locking, LRU eviction and block hashes."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from serve.engine.block_hash import block_hashes
from serve.engine.reference.page_allocator import PageAllocator
from serve.engine.reference.radix_cache import RadixCache

PAGE = 4


def _cache(num_pages: int = 64, enabled: bool = True) -> tuple[RadixCache, PageAllocator]:
    alloc = PageAllocator(num_pages)
    return RadixCache(PAGE, alloc, enabled=enabled), alloc


def _insert(cache: RadixCache, alloc: PageAllocator, tokens: list[int]):
    """What a finished request does: cache its full pages, free duplicates, return the node."""
    pages = alloc.allocate(len(tokens) // PAGE)
    node, duplicates = cache.insert(tokens[: len(pages) * PAGE], pages)
    alloc.free(duplicates)
    return node


def test_match_after_insert_returns_the_pages_in_order() -> None:
    cache, alloc = _cache()
    tokens = list(range(12))
    pages = alloc.allocate(3)
    node, duplicates = cache.insert(tokens, pages)
    assert duplicates == []
    match = cache.match_prefix(tokens + [99, 98])
    assert match.pages == pages and match.num_tokens == 12 and match.node is node
    assert cache.match_prefix(tokens[:9]).pages == pages[:2]  # stops at the last full page
    assert cache.pages_of(node) == pages
    assert cache.cached_pages == 3


def test_no_match_gives_the_root() -> None:
    cache, alloc = _cache()
    _insert(cache, alloc, list(range(8)))
    match = cache.match_prefix([7, 7, 7, 7, 7])
    assert match.pages == [] and match.num_tokens == 0 and match.node is cache.root


def test_partial_pages_are_never_cached() -> None:
    cache, alloc = _cache()
    with pytest.raises(ValueError):
        cache.insert(list(range(6)), alloc.allocate(2))  # 6 tokens is not 2 full pages
    cache.insert(list(range(4)), alloc.allocate(1))
    assert cache.match_prefix(list(range(7))).num_tokens == 4
    assert cache.match_prefix([0, 1, 2]).num_tokens == 0


def test_reinserting_a_cached_prefix_returns_the_callers_duplicates() -> None:
    cache, alloc = _cache()
    tokens = list(range(8))
    first = alloc.allocate(2)
    cache.insert(tokens, first)
    second = alloc.allocate(3)  # same two pages computed again, plus one new page
    node, duplicates = cache.insert(tokens + [50, 51, 52, 53], second)
    assert duplicates == second[:2]
    assert cache.pages_of(node) == first + second[2:]
    alloc.free(duplicates)
    assert alloc.num_used == cache.cached_pages == 3


def test_pages_from_a_match_are_not_duplicates() -> None:
    cache, alloc = _cache()
    prompt = list(range(8))
    cache.insert(prompt, alloc.allocate(2))
    match = cache.match_prefix(prompt + [8, 9, 10, 11])
    pages = match.pages + alloc.allocate(1)
    node, duplicates = cache.insert(prompt + [8, 9, 10, 11], pages)
    assert duplicates == [] and cache.pages_of(node) == pages


def test_locked_nodes_are_never_evicted() -> None:
    cache, alloc = _cache()
    locked = _insert(cache, alloc, list(range(8)))
    _insert(cache, alloc, [100 + t for t in range(8)])
    cache.lock(locked)
    assert cache.evictable_pages == 2
    assert cache.evict(10) == 2
    assert cache.match_prefix(list(range(8))).num_tokens == 8
    assert cache.evict(10) == 0
    cache.unlock(locked)
    assert cache.evictable_pages == 2
    assert cache.evict(10) == 2
    assert cache.cached_pages == 0 and alloc.num_used == 0


def test_lock_on_a_child_pins_the_shared_ancestors() -> None:
    cache, alloc = _cache()
    shared = list(range(4))
    a = _insert(cache, alloc, shared + [10, 11, 12, 13])
    _insert(cache, alloc, shared + [20, 21, 22, 23])
    cache.lock(a)
    assert cache.evict(10) == 1  # only the unlocked sibling leaf
    assert cache.cached_pages == 2
    assert cache.match_prefix(shared + [10, 11, 12, 13]).num_tokens == 8


def test_eviction_is_least_recently_used_first() -> None:
    cache, alloc = _cache()
    old, mid, new = ([base + t for t in range(4)] for base in (100, 200, 300))
    for tokens in (old, mid, new):
        _insert(cache, alloc, tokens)
    cache.match_prefix(old)  # now the most recently used
    assert cache.evict(1) == 1
    assert cache.match_prefix(mid).num_tokens == 0
    assert cache.evict(1) == 1
    assert cache.match_prefix(new).num_tokens == 0
    assert cache.match_prefix(old).num_tokens == 4


def test_evicting_a_leaf_exposes_its_parent() -> None:
    cache, alloc = _cache()
    _insert(cache, alloc, list(range(12)))
    other = _insert(cache, alloc, [50, 51, 52, 53])
    cache.match_prefix([50, 51, 52, 53])  # the three-page chain is older
    assert cache.evict(3) == 3
    assert cache.cached_pages == 1 and cache.match_prefix(list(range(12))).num_tokens == 0
    assert cache.pages_of(other) == cache.match_prefix([50, 51, 52, 53]).pages


def test_evicted_pages_go_back_to_the_allocator() -> None:
    cache, alloc = _cache(num_pages=8)
    _insert(cache, alloc, list(range(32)))
    assert alloc.num_free == 0
    assert cache.evict(3) == 3
    assert alloc.num_free == 3
    assert sorted(alloc.allocate(3)) == [5, 6, 7]  # the deepest pages went first


def test_disabled_cache_matches_and_owns_nothing() -> None:
    cache, alloc = _cache(enabled=False)
    tokens = list(range(8))
    pages = alloc.allocate(2)
    node, duplicates = cache.insert(tokens, pages)
    assert node is cache.root and duplicates == []
    assert cache.match_prefix(tokens).pages == []
    assert cache.cached_pages == 0 and cache.evict(10) == 0 and cache.block_hashes() == []
    alloc.free(pages)  # still the caller's


def test_block_hashes_are_the_chain_hashes_of_the_cached_blocks() -> None:
    cache, alloc = _cache()
    a = list(range(12))
    b = list(range(8)) + [70, 71, 72, 73]
    _insert(cache, alloc, a)
    _insert(cache, alloc, b)
    expected = set(block_hashes(a, PAGE)) | set(block_hashes(b, PAGE))
    assert len(expected) == 4
    assert sorted(cache.block_hashes()) == sorted(expected)
    # Golden: the first block, hashed from hashlib directly.
    golden = int.from_bytes(
        hashlib.blake2b(bytes(8) + struct.pack("<4I", 0, 1, 2, 3), digest_size=8).digest(),
        "little",
    )
    assert golden in cache.block_hashes()
    cache.evict(1)
    assert len(cache.block_hashes()) == 3


def test_reset_drops_everything_unreferenced() -> None:
    cache, alloc = _cache()
    kept = _insert(cache, alloc, list(range(8)))
    _insert(cache, alloc, list(range(4)) + [9, 9, 9, 9])
    _insert(cache, alloc, [40, 41, 42, 43])
    cache.lock(kept)
    cache.reset()
    assert cache.cached_pages == 2 and alloc.num_used == 2
    assert cache.match_prefix(list(range(8))).num_tokens == 8
    assert sorted(cache.block_hashes()) == sorted(block_hashes(list(range(8)), PAGE))
    cache.unlock(kept)
    assert cache.evict(10) == 2 and alloc.num_used == 0


def test_random_workload_keeps_pages_and_refs_consistent() -> None:
    rng = random.Random(0)
    cache, alloc = _cache(num_pages=40)
    running: list = []  # (deepest node, prompt) of requests holding a lock
    for _ in range(400):
        if running and rng.random() < 0.4:
            cache.unlock(running.pop(rng.randrange(len(running)))[0])
            continue
        prompt = [rng.randrange(3) for _ in range(PAGE * rng.randint(1, 5))]
        match = cache.match_prefix(prompt)
        cache.lock(match.node)
        need = len(prompt) // PAGE - len(match.pages)
        if alloc.num_free < need:
            cache.evict(need - alloc.num_free)
        if alloc.num_free < need:
            cache.unlock(match.node)
            continue
        node, duplicates = cache.insert(prompt, match.pages + alloc.allocate(need))
        assert duplicates == []  # the matched pages are the tree's own
        cache.lock(node)
        cache.unlock(match.node)
        running.append((node, prompt))
        assert alloc.num_used == cache.cached_pages
        # Whatever was evicted, every running request still finds all of its pages.
        assert all(cache.match_prefix(p).node is n for n, p in running)
    for node, _ in running:
        cache.unlock(node)
    cached = cache.cached_pages
    assert cache.evictable_pages == cached > 0
    assert cache.evict(10**6) == cached
    assert cache.cached_pages == 0 and alloc.num_free == 40
