"""`KVCacheManager`: the one owner of a rank's KV pages — the free pool, the prefix cache, and the
pages each sequence holds.

A sequence's `pages[:tree_pages]` belong to the prefix cache, held through the lock on its
`prefix_node`; the rest are its own. Four calls move them: `match_and_lock` starts a sequence
from the longest cached prefix, `reserve` gives it pages for the tokens it is about to compute
(evicting unused cached pages when the pool is short), `insert` hands its computed full pages
to the cache, and `release` gives everything back. The scheduler decides who runs and when;
this class never does.
"""

from __future__ import annotations

from collections.abc import Sequence as TokenIds

from serve.engine.reference.page_allocator import PageAllocator
from serve.engine.reference.radix_cache import RadixCache
from serve.engine.reference.sequence import Sequence


class KVCacheManager:
    """`num_pages` pages of `page_size` tokens; with `prefix_cache=False` nothing is shared and
    every page is freed on release."""

    def __init__(self, page_size: int, num_pages: int, prefix_cache: bool = True) -> None:
        self.page_size = page_size
        self._allocator = PageAllocator(num_pages)
        self._cache = RadixCache(page_size, self._allocator, enabled=prefix_cache)

    def match_and_lock(self, seq: Sequence) -> None:
        """Start `seq` from the longest cached prefix of its tokens, leaving at least one token
        to compute, and hold that prefix until `release`."""
        match = self._cache.match_prefix(seq.token_ids[:-1])
        self._cache.lock(match.node)
        seq.pages, seq.tree_pages = list(match.pages), len(match.pages)
        seq.prefix_node, seq.num_computed = match.node, match.num_tokens

    def reserve(self, seq: Sequence, num_tokens: int) -> bool:
        """Enough pages for `seq` to hold the KV of `num_tokens` tokens, evicting unused cached
        pages if the pool is short. False, taking nothing, when even that is not enough."""
        need = -(-num_tokens // self.page_size) - len(seq.pages)
        if need > self._allocator.num_free:
            self._cache.evict(need - self._allocator.num_free)
        if need > self._allocator.num_free:
            return False
        if need > 0:
            seq.pages.extend(self._allocator.allocate(need))
        return True

    def insert(self, seq: Sequence) -> None:
        """Hand `seq`'s full computed pages to the prefix cache and hold them there. Where the
        cache already had a page for the same tokens, `seq` switches to it and frees its own."""
        full = seq.num_computed // self.page_size
        if not self._cache.enabled or full <= seq.tree_pages:
            return
        node, duplicates = self._cache.insert(
            seq.token_ids[: full * self.page_size], seq.pages[:full])
        tree = self._cache.pages_of(node)
        self._cache.lock(node)
        if seq.prefix_node is not None:
            self._cache.unlock(seq.prefix_node)
        held = set(tree)
        self._allocator.free([p for p in duplicates if p not in held])
        seq.pages[:full] = tree
        seq.tree_pages, seq.prefix_node = full, node

    def release(self, seq: Sequence) -> None:
        """Give back `seq`'s own pages and its hold on cached ones; it then has no KV."""
        if seq.prefix_node is not None:
            self._cache.unlock(seq.prefix_node)
        self._allocator.free(seq.pages[seq.tree_pages:])
        seq.pages, seq.tree_pages, seq.prefix_node, seq.num_computed = [], 0, None, 0

    def cached_prefix_tokens(self, token_ids: TokenIds[int]) -> int:
        """Tokens of the longest cached prefix of `token_ids`, in full pages (marked as used)."""
        return self._cache.match_prefix(token_ids).num_tokens

    def block_hashes(self) -> list[int]:
        """Chain hashes of every cached block (see `serve.engine.block_hash`)."""
        return self._cache.block_hashes()

    @property
    def total_pages(self) -> int:
        return self._allocator.num_total

    @property
    def free_pages(self) -> int:
        """Pages no sequence and no cached block holds."""
        return self._allocator.num_free

    @property
    def cached_pages(self) -> int:
        """Pages the prefix cache holds, in use or not."""
        return self._cache.cached_pages

    def pages_in_use(self) -> int:
        """Pages that cannot be handed out, even by evicting: those sequences hold."""
        return self._allocator.num_total - self._allocator.num_free - self._cache.evictable_pages
