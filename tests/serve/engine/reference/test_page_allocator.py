"""The KV page pool: allocation, exhaustion and double frees."""

from __future__ import annotations

import pytest

from serve.engine.reference.page_allocator import OutOfPagesError, PageAllocator


def test_fresh_pool_hands_out_distinct_lowest_pages() -> None:
    alloc = PageAllocator(8)
    assert (alloc.num_total, alloc.num_free, alloc.num_used) == (8, 8, 0)
    first = alloc.allocate(3)
    assert first == [0, 1, 2]
    second = alloc.allocate(5)
    assert sorted(first + second) == list(range(8))
    assert alloc.num_free == 0 and alloc.num_used == 8
    assert alloc.allocate(0) == []


def test_out_of_pages_raises_and_allocates_nothing() -> None:
    alloc = PageAllocator(4)
    alloc.allocate(3)
    with pytest.raises(OutOfPagesError):
        alloc.allocate(2)
    assert alloc.num_free == 1
    assert issubclass(OutOfPagesError, RuntimeError)


def test_freed_pages_are_reused() -> None:
    alloc = PageAllocator(4)
    pages = alloc.allocate(4)
    alloc.free(pages[1:3])
    assert alloc.num_free == 2
    assert sorted(alloc.allocate(2)) == sorted(pages[1:3])


def test_double_free_raises_and_frees_nothing() -> None:
    alloc = PageAllocator(4)
    pages = alloc.allocate(2)
    alloc.free([pages[0]])
    with pytest.raises(ValueError, match="double free"):
        alloc.free([pages[1], pages[0]])
    assert alloc.num_free == 3  # pages[1] was not freed by the failed call
    with pytest.raises(ValueError, match="double free"):
        alloc.free([pages[1], pages[1]])
    with pytest.raises(ValueError):
        alloc.free([2])  # never allocated
    with pytest.raises(ValueError):
        alloc.free([99])  # outside the pool


def test_every_page_allocated_once_over_many_cycles() -> None:
    alloc = PageAllocator(16)
    held: list[int] = []
    for step in range(100):
        if step % 3 == 2:
            alloc.free(held[: len(held) // 2])
            held = held[len(held) // 2 :]
        else:
            held += alloc.allocate(min(3, alloc.num_free))
        assert len(set(held)) == len(held) == alloc.num_used
