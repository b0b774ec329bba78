"""The KV-cache manager: a sequence's pages from match to release, shared through the cache."""

from __future__ import annotations

from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.reference.kv_cache_manager import KVCacheManager
from serve.engine.reference.sequence import Sequence

PAGE = 4


def _seq(tokens: list[int], i: int = 0) -> Sequence:
    return Sequence(GenerationRequest(f"r{i}", tuple(tokens), SamplingParams(max_tokens=4)), i)


def _compute(kv: KVCacheManager, seq: Sequence) -> None:
    """What the scheduler does for one sequence: match, reserve, compute it all, insert."""
    kv.match_and_lock(seq)
    assert kv.reserve(seq, len(seq.token_ids))
    seq.num_computed = len(seq.token_ids)
    kv.insert(seq)


def test_a_released_sequence_leaves_only_its_cached_full_pages() -> None:
    kv = KVCacheManager(PAGE, num_pages=8)
    seq = _seq(list(range(10)))  # two full pages and a partial one
    _compute(kv, seq)
    assert len(seq.pages) == 3 and seq.tree_pages == 2
    assert kv.pages_in_use() == 3 and kv.cached_pages == 2
    kv.release(seq)
    assert seq.pages == [] and seq.num_computed == 0 and seq.prefix_node is None
    assert kv.free_pages == 6 and kv.pages_in_use() == 0 and kv.cached_pages == 2


def test_a_later_sequence_starts_from_the_cached_prefix_and_shares_its_pages() -> None:
    kv = KVCacheManager(PAGE, num_pages=8)
    first = _seq(list(range(10)))
    _compute(kv, first)
    second = _seq(list(range(8)) + [50, 51, 52], i=1)
    kv.match_and_lock(second)
    assert second.num_computed == 8 and second.pages == first.pages[:2]
    assert kv.cached_prefix_tokens(list(range(9))) == 8


def test_the_same_tokens_computed_twice_keep_one_copy() -> None:
    kv = KVCacheManager(PAGE, num_pages=8)
    a, b = _seq(list(range(8))), _seq(list(range(8)), i=1)
    for s in (a, b):  # both matched before either cached anything
        kv.match_and_lock(s)
        assert kv.reserve(s, 8)
    for s in (a, b):
        s.num_computed = 8
        kv.insert(s)
    assert b.pages == a.pages and kv.cached_pages == 2 and kv.free_pages == 6


def test_reserve_evicts_unused_cached_pages_and_refuses_when_they_are_not_enough() -> None:
    kv = KVCacheManager(PAGE, num_pages=4)
    old = _seq(list(range(8)))
    _compute(kv, old)
    kv.release(old)  # two cached pages, unused
    new = _seq(list(range(100, 116)), i=1)
    kv.match_and_lock(new)
    assert kv.reserve(new, 16) and kv.cached_pages == 0 and kv.free_pages == 0
    other = _seq(list(range(200, 204)), i=2)
    kv.match_and_lock(other)
    assert not kv.reserve(other, 4) and other.pages == []


def test_without_a_prefix_cache_every_page_is_freed_on_release() -> None:
    kv = KVCacheManager(PAGE, num_pages=8, prefix_cache=False)
    seq = _seq(list(range(10)))
    _compute(kv, seq)
    assert seq.tree_pages == 0 and kv.cached_pages == 0
    kv.release(seq)
    assert kv.free_pages == 8 and kv.block_hashes() == []
