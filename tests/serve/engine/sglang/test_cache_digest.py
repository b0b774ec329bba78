"""CacheDigest fed SGLang's own KV event classes: r1serve's chain hashes of what SGLang holds."""

from __future__ import annotations

import pytest

from serve.engine.block_hash import block_hashes
from serve.engine.sglang.cache_digest import CacheDigest

kv = pytest.importorskip("sglang.srt.disaggregation.kv_events",
                         reason="install SGLang's parser: bash scripts/install_test_sglang.sh")

msgspec = pytest.importorskip("msgspec")

PAGE = 4
TOKENS = list(range(100, 124))  # six pages


def stored(first: int, pages: int, parent: int | None, medium: str | None = None, **extra):
    """SGLang's event for pages [first, first + pages) of TOKENS, its hashes 1000 + index."""
    return kv.BlockStored(block_hashes=[1000 + i for i in range(first, first + pages)],
                          parent_block_hash=parent,
                          token_ids=TOKENS[first * PAGE:(first + pages) * PAGE],
                          block_size=PAGE, lora_id=None, medium=medium, **extra)


def test_stored_pages_chain_into_the_routers_block_hashes():
    digest = CacheDigest(PAGE)
    # Two radix nodes: pages 0-1 from the root, then pages 2-4 under page 1 (one coalesced event).
    digest.apply([stored(0, 2, None), stored(2, 3, 1001)])
    assert set(digest.block_hashes()) == set(block_hashes(TOKENS[:5 * PAGE], PAGE))


def test_a_page_stays_while_any_tier_holds_it():
    digest = CacheDigest(PAGE)
    digest.apply([stored(0, 2, None)])
    # Hierarchical cache: page 1 is backed up to host memory, then evicted from the GPU.
    digest.apply([stored(1, 1, 1000, medium=kv.StorageMedium.CPU.value),
                  kv.BlockRemoved(block_hashes=[1001])])
    assert len(digest.block_hashes()) == 2
    digest.apply([kv.BlockRemoved(block_hashes=[1001], medium=kv.StorageMedium.CPU.value)])
    assert digest.block_hashes() == tuple(block_hashes(TOKENS[:PAGE], PAGE))
    digest.apply([kv.AllBlocksCleared()])
    assert digest.block_hashes() == ()


@pytest.mark.parametrize("event", [
    stored(2, 1, 1001),  # its parent was never seen: missed events
    stored(0, 1, None, cache_salt="tenant-a"),  # another namespace than plain token prefixes
    kv.BlockStored(block_hashes=[7], parent_block_hash=None, token_ids=TOKENS[:8], block_size=8,
                   lora_id=None),  # a page of another size than the engine's
])
def test_pages_it_cannot_name_are_left_out(event):
    digest = CacheDigest(PAGE)
    digest.apply([event])
    assert digest.block_hashes() == () and digest.unnamed_pages == len(event.block_hashes)


def test_events_decode_from_sglangs_wire_format():
    batch = kv.KVEventBatch(ts=1.0, events=[stored(0, 2, None),
                                            kv.BlockRemoved(block_hashes=[1001])])
    payload = msgspec.msgpack.encode(batch)
    digest = CacheDigest(PAGE)
    digest.apply(msgspec.msgpack.Decoder(kv.KVEventBatch).decode(payload).events)
    assert digest.block_hashes() == tuple(block_hashes(TOKENS[:PAGE], PAGE))
