"""`CacheDigest`: one SGLang KV cache in r1serve's block hashes, rebuilt from its KV events.

SGLang publishes every change to its radix cache as KV events (`--kv-events-config`, the feed
KV-aware routers such as Dynamo's read): `BlockStored` carries pages with their token ids,
SGLang's hash of each page and of the page before the first; `BlockRemoved` names pages gone
from one storage tier (GPU, host memory, ...); `AllBlocksCleared` an emptied cache. Pages are
SGLang's own size, which SGLang resolves per attention backend: 1 token with FlashAttention 3
(its default for MLA on Hopper), 64 with FlashMLA, or what `--page-size` asks for.

The router speaks r1serve's chain hashes over `block_size`-token blocks (`block_hash`), so the
digest rebuilds that chain from the pages' token ids, whatever SGLang's page size. For each page
held it keeps where the chain stands at the page's end: the hash over the whole blocks before
that point, and the tokens since the last block boundary (kept as the page's share of them plus
a link to the page before, so a page of one token costs one token). A stored page extends its
parent's state; each block whose last token lies in the page is owned by that page. SGLang holds
a page only with every page before it, so a block is held exactly while the page holding its
last token is: evicting that page (from every tier) drops the block, evicting any other drops
none.

A page whose parent the digest never saw (events dropped at the socket's high-water mark, or
sent before r1serve subscribed) cannot be named and is left out, and so are pages namespaced by
a cache salt or LoRA adapter (their prefixes are not the plain token prefixes the router
hashes). The digest errs towards missing a prefix: that costs the router a hit, never a wrong
guess.

Memory: one small record per page held, in any tier: about 200 bytes, so per token at page
size 1, bounded by what SGLang's KV pool and host cache hold. `max_pages` caps it regardless
(pages past it are left out), so that removals lost on the socket cannot grow it without end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from serve.engine.block_hash import ROOT_HASH, hash_block

GPU = "GPU"  # SGLang's StorageMedium.GPU, the tier an event names when it names none
DEFAULT_MAX_PAGES = 1 << 22  # ~4M pages, ~1 GB at page size 1


class _Page:
    """Where r1serve's chain stands at the end of one SGLang page."""

    __slots__ = ("chain", "owns", "parent", "tail", "tiers")

    def __init__(self, chain: int, owns: tuple[int, ...], parent: _Page | None,
                 tail: tuple[int, ...], tiers: int) -> None:
        self.chain = chain  # r1serve hash over the whole blocks up to the page's end
        self.owns = owns  # r1serve blocks whose last token lies in this page
        # Tokens after the last block boundary: `tail`, preceded by the parent's when the page
        # crosses no boundary (`parent` is then set, else None).
        self.parent = parent
        self.tail = tail
        self.tiers = tiers  # bit set of the storage tiers holding the page


class CacheDigest:
    """Folds one SGLang KV cache's events (`BlockStored`, `BlockRemoved`, `AllBlocksCleared`)
    into the set of r1serve block hashes it holds."""

    def __init__(self, block_size: int, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        if block_size < 1:
            raise ValueError(f"block_size={block_size} must be at least 1")
        self.block_size = block_size
        self.max_pages = max_pages
        self._pages: dict[int, _Page] = {}  # SGLang page hash -> its state
        self._blocks: dict[int, int] = {}  # r1serve block hash -> pages owning it
        self._tier_bits: dict[str, int] = {GPU: 1}
        self.unnamed_pages = 0  # stored pages left out (see the module docstring)

    def __len__(self) -> int:
        """SGLang pages tracked."""
        return len(self._pages)

    def apply(self, events: Iterable[Any]) -> None:
        """Apply one batch's events in order."""
        for event in events:
            kind = type(event).__name__
            if kind == "BlockStored":
                self._stored(event)
            elif kind == "BlockRemoved":
                self._removed(event)
            elif kind == "AllBlocksCleared":
                self._pages.clear()
                self._blocks.clear()

    def block_hashes(self) -> tuple[int, ...]:
        """r1serve chain hashes of every block the cache holds, in any tier."""
        return tuple(self._blocks)

    def _stored(self, event: Any) -> None:
        hashes, tokens, size = event.block_hashes, event.token_ids, event.block_size
        tier = self._tier(event.medium)
        parent = None if event.parent_block_hash is None \
            else self._pages.get(event.parent_block_hash)
        namespaced = event.cache_salt is not None or event.lora_name is not None
        plain = all(isinstance(t, int) for t in tokens)  # not bigram pages
        if (event.parent_block_hash is not None and parent is None) or namespaced \
                or not plain or size < 1 or len(tokens) != size * len(hashes):
            self.unnamed_pages += len(hashes)
            return
        chain = ROOT_HASH if parent is None else parent.chain
        tail = _tail(parent)
        for i, page_hash in enumerate(hashes):
            page = self._pages.get(page_hash)
            if page is None:
                if len(self._pages) >= self.max_pages:
                    self.unnamed_pages += len(hashes) - i
                    return
                page = self._page(parent, tail, chain, tokens[i * size:(i + 1) * size], tier)
                self._pages[page_hash] = page
            else:  # already held in another tier: the same page, its state unchanged
                page.tiers |= tier
            parent, chain = page, page.chain
            tail = page.tail if page.parent is None else tail + page.tail

    def _page(self, parent: _Page | None, tail: tuple[int, ...], chain: int,
              tokens: Sequence[int], tier: int) -> _Page:
        """The state after `tokens`, given the chain and tail before them."""
        b = self.block_size
        pending = (*tail, *tokens)
        whole = len(pending) // b
        if whole == 0:  # no boundary crossed: the tail runs on into the parent's
            return _Page(chain, (), parent, tuple(tokens), tier)
        owns = []
        for k in range(whole):
            chain = hash_block(chain, pending[k * b:(k + 1) * b])
            owns.append(chain)
            self._blocks[chain] = self._blocks.get(chain, 0) + 1
        return _Page(chain, tuple(owns), None, pending[whole * b:], tier)

    def _removed(self, event: Any) -> None:
        tier = self._tier(event.medium)
        for page_hash in event.block_hashes:
            page = self._pages.get(page_hash)
            if page is None:
                continue
            page.tiers &= ~tier
            if page.tiers:
                continue
            del self._pages[page_hash]
            for block in page.owns:
                left = self._blocks[block] - 1
                if left:
                    self._blocks[block] = left
                else:
                    del self._blocks[block]

    def _tier(self, medium: str | None) -> int:
        name = medium or GPU
        bit = self._tier_bits.get(name)
        if bit is None:
            bit = self._tier_bits[name] = 1 << len(self._tier_bits)
        return bit


def _tail(page: _Page | None) -> tuple[int, ...]:
    """The tokens after the last block boundary up to the end of `page`."""
    parts: list[tuple[int, ...]] = []
    while page is not None:
        parts.append(page.tail)
        page = page.parent
    return tuple(t for part in reversed(parts) for t in part)
