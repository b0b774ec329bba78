"""`PageAllocator`: hands out KV-cache page ids from a fixed pool."""

from __future__ import annotations

from collections.abc import Iterable


class OutOfPagesError(RuntimeError):
    """More pages were asked for than are free. The scheduler checks `num_free` (and evicts
    from the prefix cache) before allocating, so this signals a scheduler bug."""


class PageAllocator:
    """A pool of `num_pages` page ids, `0 .. num_pages-1`.

    Free pages sit on a stack, so the pages freed last are reused first (they are the likeliest
    to still be in CPU caches); a fresh pool hands out the lowest ids first. Freeing a page that
    is not allocated raises, because it means two owners think they hold the same page.
    """

    def __init__(self, num_pages: int) -> None:
        if num_pages < 0:
            raise ValueError(f"num_pages={num_pages} must be non-negative")
        self._num_total = num_pages
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self._in_use = bytearray(num_pages)

    @property
    def num_total(self) -> int:
        """Pages in the pool."""
        return self._num_total

    @property
    def num_free(self) -> int:
        """Pages that `allocate` can hand out now."""
        return len(self._free)

    @property
    def num_used(self) -> int:
        """Pages handed out and not yet freed."""
        return self._num_total - len(self._free)

    def allocate(self, n: int) -> list[int]:
        """Take `n` free pages; raise `OutOfPagesError` (allocating nothing) if fewer are free."""
        if n < 0:
            raise ValueError(f"cannot allocate {n} pages")
        if n > len(self._free):
            raise OutOfPagesError(f"asked for {n} KV pages, only {len(self._free)} are free")
        if n == 0:
            return []
        pages = self._free[-n:]
        del self._free[-n:]
        pages.reverse()  # pop order: lowest ids of a fresh pool first
        for page in pages:
            self._in_use[page] = 1
        return pages

    def free(self, pages: Iterable[int]) -> None:
        """Return `pages` to the pool. Raises `ValueError` (freeing nothing) when a page is out of
        range, not allocated, or listed twice."""
        pages = list(pages)
        seen: set[int] = set()
        for page in pages:
            if not 0 <= page < self._num_total:
                raise ValueError(f"page {page} is outside the pool of {self._num_total} pages")
            if not self._in_use[page] or page in seen:
                raise ValueError(f"double free of KV page {page}")
            seen.add(page)
        for page in pages:
            self._in_use[page] = 0
        # Reversed so that the first page in `pages` is the next one handed out.
        self._free.extend(reversed(pages))
