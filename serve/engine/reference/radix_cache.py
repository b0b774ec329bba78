"""`RadixCache`: a prefix cache of KV pages, keyed by token ids one full page at a time.

Every node below the root is one full page: its key is the page's `page_size` token ids, and it
owns that page's KV-cache page id. A request that shares a prompt prefix with an earlier one
reuses those pages instead of recomputing them. Partial pages are never cached, so a node's KV
is complete and immutable.

Ownership. Pages a request allocates belong to the request until it `insert`s them; from then on
the tree owns them and returns them to the allocator only through `evict` or `reset`. A running
request `lock`s the deepest node it uses, which pins that node and all its ancestors.

Eviction. Only unreferenced leaves may go, least recently used first; removing a leaf can make
its parent an evictable leaf. A lazy min-heap of (last access, node) finds them without scanning
the tree: entries go stale when a node is touched, locked or gains a child, and are checked and
skipped when popped.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from serve.engine.block_hash import ROOT_HASH, hash_block
from serve.engine.reference.page_allocator import PageAllocator


class Node:
    """One cached page: its token ids, KV page id, users and chain hash."""

    __slots__ = ("key", "page", "parent", "children", "ref", "last_access", "block_hash")

    def __init__(
        self, key: tuple[int, ...], page: int, parent: Node | None, block_hash: int, tick: int
    ) -> None:
        self.key = key
        self.page = page
        self.parent = parent  # None for the root and for evicted nodes
        self.children: dict[tuple[int, ...], Node] = {}
        self.ref = 0  # running requests whose prefix passes through this node
        self.last_access = tick
        self.block_hash = block_hash

    def __repr__(self) -> str:
        return f"Node(page={self.page}, ref={self.ref}, children={len(self.children)})"


@dataclass(frozen=True)
class PrefixMatch:
    """The longest cached prefix of some token ids, in whole pages."""

    pages: list[int]  # page ids of the matched full pages, in order
    num_tokens: int  # len(pages) * page_size
    node: Node  # deepest matched node (the root if none)


class RadixCache:
    """A trie of full KV pages shared between requests with a common prompt prefix.

    With `enabled=False` it caches nothing: matches are empty, `insert` takes no pages (the
    caller keeps and frees them), and there is never anything to evict.
    """

    def __init__(self, page_size: int, allocator: PageAllocator, enabled: bool = True) -> None:
        if page_size < 1:
            raise ValueError(f"page_size={page_size} must be at least 1")
        self.page_size = page_size
        self.enabled = enabled
        self._allocator = allocator
        self._root = Node((), -1, None, ROOT_HASH, 0)
        self._tick = itertools.count(1)
        self._heap: list[tuple[int, int, Node]] = []  # (last_access, tiebreak, leaf)
        self._heap_seq = itertools.count()
        self._num_nodes = 0
        self._num_locked = 0  # nodes with ref > 0
        self._hashes: dict[int, None] = {}  # an ordered set of cached blocks' chain hashes

    @property
    def root(self) -> Node:
        """The empty prefix; it holds no page and is never evicted."""
        return self._root

    @property
    def cached_pages(self) -> int:
        """Pages the tree owns."""
        return self._num_nodes

    @property
    def evictable_pages(self) -> int:
        """Pages that `evict` could free now: every node no running request uses (such a node's
        descendants are unused too, so they all go leaf by leaf)."""
        return self._num_nodes - self._num_locked

    def match_prefix(self, token_ids: Sequence[int]) -> PrefixMatch:
        """The longest cached prefix of `token_ids` in full pages; marks it recently used."""
        node = self._root
        pages: list[int] = []
        if self.enabled:
            tick = next(self._tick)
            for key in self._page_keys(token_ids, len(token_ids) // self.page_size):
                child = node.children.get(key)
                if child is None:
                    break
                node = child
                node.last_access = tick
                pages.append(node.page)
            self._push_if_evictable(node)  # its access time changed; only the end can be a leaf
        return PrefixMatch(pages, len(pages) * self.page_size, node)

    def lock(self, node: Node) -> None:
        """Pin `node` and its ancestors: a running request reads their pages."""
        while node is not self._root:
            assert node.parent is not None, "lock of an evicted node"
            if node.ref == 0:
                self._num_locked += 1
            node.ref += 1
            node = node.parent

    def unlock(self, node: Node) -> None:
        """Undo one `lock(node)`; nodes nobody uses become evictable."""
        leaf = node
        while node is not self._root:
            assert node.parent is not None and node.ref > 0, "unlock without a matching lock"
            node.ref -= 1
            if node.ref == 0:
                self._num_locked -= 1
            node = node.parent
        self._push_if_evictable(leaf)

    def insert(self, token_ids: Sequence[int], pages: Sequence[int]) -> tuple[Node, list[int]]:
        """Cache `pages`, the KV of `token_ids` (exactly `len(pages) * page_size` tokens).

        Where the tree already holds a page for a position, it keeps its own; if the caller's
        page there is a different one, it comes back in the duplicates list for the caller to
        free (the caller then uses `pages_of(node)`). New nodes take ownership of the caller's
        pages. Returns the deepest node and the duplicates. A disabled cache returns
        `(root, [])` and takes nothing.
        """
        if len(token_ids) != len(pages) * self.page_size:
            raise ValueError(
                f"insert needs {len(pages)} full pages of {self.page_size} tokens, "
                f"got {len(token_ids)} tokens"
            )
        if not self.enabled:
            return self._root, []
        tick = next(self._tick)
        node = self._root
        duplicates: list[int] = []
        for key, page in zip(self._page_keys(token_ids, len(pages)), pages, strict=True):
            child = node.children.get(key)
            if child is None:
                child = Node(key, page, node, hash_block(node.block_hash, key), tick)
                node.children[key] = child
                self._num_nodes += 1
                self._hashes[child.block_hash] = None
            elif child.page != page:
                duplicates.append(page)
            child.last_access = tick
            node = child
        self._push_if_evictable(node)
        return node, duplicates

    def pages_of(self, node: Node) -> list[int]:
        """Page ids on the path from the root to `node`, in prefix order."""
        pages: list[int] = []
        while node is not self._root:
            assert node.parent is not None, "pages_of an evicted node"
            pages.append(node.page)
            node = node.parent
        pages.reverse()
        return pages

    def evict(self, num_pages: int) -> int:
        """Free up to `num_pages` pages of unreferenced leaves, least recently used first, back
        to the allocator. Returns how many were freed."""
        freed: list[int] = []
        while len(freed) < num_pages and self._heap:
            tick, _, node = heapq.heappop(self._heap)
            if tick != node.last_access or not self._is_evictable(node):
                continue  # stale entry: touched, locked, grew a child or already evicted
            parent = node.parent
            assert parent is not None
            del parent.children[node.key]
            node.parent = None
            self._num_nodes -= 1
            self._hashes.pop(node.block_hash, None)
            freed.append(node.page)
            self._push_if_evictable(parent)
        self._allocator.free(freed)
        return len(freed)

    def block_hashes(self) -> list[int]:
        """Chain hashes (see `serve.engine.block_hash`) of every cached block."""
        return list(self._hashes)

    def reset(self) -> None:
        """Drop every node no running request uses, freeing its page."""
        freed: list[int] = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            for key, child in list(node.children.items()):
                if child.ref > 0:
                    stack.append(child)
                    continue
                del node.children[key]
                self._drop_subtree(child, freed)
        self._heap.clear()  # every node left is locked; unlock pushes them back
        self._allocator.free(freed)

    def _drop_subtree(self, top: Node, freed: list[int]) -> None:
        stack = [top]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            node.children.clear()
            node.parent = None
            self._num_nodes -= 1
            self._hashes.pop(node.block_hash, None)
            freed.append(node.page)

    def _page_keys(self, token_ids: Sequence[int], num_pages: int) -> Iterator[tuple[int, ...]]:
        size = self.page_size  # lazily: a match usually stops long before a long prompt ends
        for start in range(0, num_pages * size, size):
            yield tuple(token_ids[start : start + size])

    def _is_evictable(self, node: Node) -> bool:
        return node.parent is not None and node.ref == 0 and not node.children

    def _push_if_evictable(self, node: Node) -> None:
        if not self._is_evictable(node):
            return
        heapq.heappush(self._heap, (node.last_access, next(self._heap_seq), node))
        if len(self._heap) > 2 * self._num_nodes + 64:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        """Drop stale entries so repeated touches cannot grow the heap without bound."""
        heap: list[tuple[int, int, Node]] = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            if self._is_evictable(node):
                heap.append((node.last_access, next(self._heap_seq), node))
        heapq.heapify(heap)
        self._heap = heap
