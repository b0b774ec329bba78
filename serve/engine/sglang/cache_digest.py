"""`CacheDigest`: an SGLang instance's prefix cache in r1serve's block hashes, from KV events.

SGLang publishes every change to its radix cache as KV events (`--kv-events-config`, the feed
KV-aware routers such as Dynamo's read): `BlockStored` carries each page's token ids with
SGLang's hash of the page and of the page before it, `BlockRemoved` the hashes of pages gone
from one storage tier, `AllBlocksCleared` an emptied cache. SGLang's hashes are its own; the
router speaks `serve.engine.block_hash` chain hashes. A stored page's chain hash follows from
its parent's and its token ids, so the digest keeps, for every page held in any tier (GPU or
host memory), SGLang's hash -> r1serve's hash, and reports the latter as
`EngineStats.cached_block_hashes`.

A page whose parent the digest never saw (events dropped at the socket's high-water mark, or
sent before r1serve subscribed) cannot be named and is left out, and so are pages of another
size than the engine's page or namespaced by a cache salt or LoRA adapter (their prefixes are
not the plain token prefixes the router hashes). The digest errs towards missing a prefix: that
costs the router a hit, never a wrong guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from serve.engine.block_hash import ROOT_HASH, hash_block

GPU = "GPU"  # SGLang's StorageMedium.GPU, the tier an event names when it names none


class CacheDigest:
    """Folds SGLang's KV events (its `BlockStored`, `BlockRemoved`, `AllBlocksCleared`) into the
    set of r1serve block hashes the instance caches."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._ours: dict[int, int] = {}  # SGLang page hash -> r1serve chain hash
        self._tiers: dict[int, set[str]] = {}  # SGLang page hash -> tiers holding the page
        self.unnamed_pages = 0  # stored pages left out (see the module docstring)

    def apply(self, events: Iterable[Any]) -> None:
        """Apply one batch's events in order."""
        for event in events:
            kind = type(event).__name__
            if kind == "BlockStored":
                self._stored(event)
            elif kind == "BlockRemoved":
                self._removed(event)
            elif kind == "AllBlocksCleared":
                self._ours.clear()
                self._tiers.clear()

    def block_hashes(self) -> tuple[int, ...]:
        """r1serve chain hashes of every page the instance holds, in any tier."""
        return tuple(self._ours.values())

    def _stored(self, event: Any) -> None:
        size, hashes, tokens = event.block_size, event.block_hashes, event.token_ids
        parent = (ROOT_HASH if event.parent_block_hash is None
                  else self._ours.get(event.parent_block_hash))
        namespaced = event.cache_salt is not None or event.lora_name is not None
        plain = all(isinstance(t, int) for t in tokens)  # not bigram pages
        if parent is None or namespaced or size != self.page_size or not plain \
                or len(tokens) != size * len(hashes):
            self.unnamed_pages += len(hashes)
            return
        tier = event.medium or GPU
        for i, page_hash in enumerate(hashes):
            parent = hash_block(parent, tokens[i * size:(i + 1) * size])
            self._ours[page_hash] = parent
            self._tiers.setdefault(page_hash, set()).add(tier)

    def _removed(self, event: Any) -> None:
        tier = event.medium or GPU
        for page_hash in event.block_hashes:
            tiers = self._tiers.get(page_hash)
            if tiers is None:
                continue
            tiers.discard(tier)
            if not tiers:
                del self._tiers[page_hash]
                del self._ours[page_hash]
