"""CacheDigest fed the KV events SGLang's own recorder emits, at SGLang's page sizes 1, 16, 64:
r1serve's 16-token chain hashes of what SGLang holds, whatever SGLang's page size.

The events come from `sglang.srt.mem_cache.events.KVCacheEventRecorder`, the object SGLang's
`RadixCache` calls on every insert and eviction (page hashes from SGLang's native hash,
coalesced as SGLang coalesces them) and travel through SGLang's msgpack wire format. Only the
tree nodes are stand-ins: `RadixCache`'s module imports SGLang's model configs, which need
torchvision, so the nodes here carry just what the recorder reads of a `TreeNode` (key,
parent, hash values), laid out as RadixCache leaves them after it split a node.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field

import pytest

from serve.engine.block_hash import block_hashes
from serve.engine.sglang.cache_digest import CacheDigest

kv = pytest.importorskip("sglang.srt.disaggregation.kv_events",
                         reason="install SGLang's parser: bash scripts/install_test_sglang.sh")
events_module = pytest.importorskip("sglang.srt.mem_cache.events",
                                    reason="install SGLang's parser: "
                                    "bash scripts/install_test_sglang.sh")
msgspec = pytest.importorskip("msgspec")

BLOCK = 16  # r1serve's block size


@pytest.fixture(scope="module", autouse=True)
def native_hash() -> None:
    """SGLang hashes pages with a C++ extension it compiles on first use."""
    from sglang.srt.mem_cache.cpp_utils.native_hash import get_native_hash

    try:
        get_native_hash([1, 2], None, 1)
    except RuntimeError as e:
        pytest.skip(f"SGLang's native page hash does not build here: {e}")


@dataclass(eq=False)
class Key:
    """What the recorder reads of SGLang's RadixKey."""

    token_ids: array
    extra_key: str | None = None
    cache_salt: str | None = None
    is_bigram: bool = False

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass(eq=False)
class Node:
    """What the recorder reads of SGLang's TreeNode."""

    key: Key
    parent: Node | None
    hash_value: list[str] | None = None
    event_hash_value: list[str] | None = None
    children: list[Node] = field(default_factory=list)

    def child(self, tokens: list[int], **key) -> Node:
        node = Node(Key(array("q", tokens), **key), self)
        self.children.append(node)
        return node

    def path(self) -> list[int]:
        return ([] if self.parent is None else self.parent.path()) + list(self.key.token_ids)


def root() -> Node:
    return Node(Key(array("q")), None, hash_value=[])  # as RadixCache.reset() leaves it


class Sglang:
    """One KV cache's recorder at `page_size`, its events sent over SGLang's wire format."""

    def __init__(self, page_size: int) -> None:
        self.recorder = events_module.KVCacheEventRecorder(enabled=True, page_size=page_size)
        self.decoder = msgspec.msgpack.Decoder(kv.KVEventBatch)

    def send(self, digest: CacheDigest) -> list:
        batch = kv.KVEventBatch(ts=0.0, events=self.recorder.take())
        events = self.decoder.decode(msgspec.msgpack.encode(batch)).events
        digest.apply(events)
        return events


def held(*nodes: Node) -> set[int]:
    """r1serve's hashes of the blocks whole within the prefixes the nodes end."""
    return {h for n in nodes for h in block_hashes(n.path(), BLOCK)}


def two_prompts(page: int) -> tuple[Node, Node, Node, Node]:
    """Two prompts sharing 130 tokens, cached as SGLang's tree holds them at `page`: the
    shared part (page-aligned), then each prompt's own rest (page-aligned)."""
    rng = random.Random(page)
    a = [rng.randrange(1, 129_000) for _ in range(200)]
    b = a[:130] + [rng.randrange(1, 129_000) for _ in range(77)]
    split = 130 // page * page
    tree = root()
    shared = tree.child(a[:split])
    rest_a = shared.child(a[split:len(a) // page * page])
    rest_b = shared.child(b[split:len(b) // page * page])
    return tree, shared, rest_a, rest_b


@pytest.mark.parametrize("page", [1, 16, 64])
def test_digest_is_r1serves_chain_at_any_sglang_page_size(page: int) -> None:
    _, shared, rest_a, rest_b = two_prompts(page)
    sglang, digest = Sglang(page), CacheDigest(BLOCK)
    for node in (shared, rest_a, rest_b):
        sglang.recorder.record_store(node)
    events = sglang.send(digest)
    assert {e.block_size for e in events} == {page}
    assert set(digest.block_hashes()) == held(rest_a, rest_b)
    assert len(digest.block_hashes()) == len(held(rest_a, rest_b))

    # Eviction takes leaves first: blocks go exactly when the page of their last token does.
    sglang.recorder.record_remove(rest_a)
    sglang.send(digest)
    assert set(digest.block_hashes()) == held(shared, rest_b)
    sglang.recorder.record_remove(rest_b)
    sglang.recorder.record_remove(shared)
    sglang.send(digest)
    assert digest.block_hashes() == () and len(digest) == 0  # nothing left behind
    assert digest.unnamed_pages == 0


@pytest.mark.parametrize("page", [1, 16, 64])
def test_a_page_stays_while_any_tier_holds_it(page: int) -> None:
    _, shared, rest_a, _ = two_prompts(page)
    sglang, digest = Sglang(page), CacheDigest(BLOCK)
    sglang.recorder.record_store(shared)
    sglang.recorder.record_store(rest_a)
    # Hierarchical cache: rest_a is backed up to host memory, then evicted from the GPU.
    sglang.recorder.record_store(rest_a, medium=kv.StorageMedium.CPU)
    sglang.recorder.record_remove(rest_a)
    sglang.send(digest)
    assert set(digest.block_hashes()) == held(rest_a)
    sglang.recorder.record_remove(rest_a, medium=kv.StorageMedium.CPU)
    sglang.send(digest)
    assert set(digest.block_hashes()) == held(shared)
    sglang.recorder.record_all_cleared()
    sglang.send(digest)
    assert digest.block_hashes() == () and len(digest) == 0


def test_pages_whose_parent_was_missed_are_left_out() -> None:
    _, shared, rest_a, _ = two_prompts(1)
    sglang, digest = Sglang(1), CacheDigest(BLOCK)
    sglang.recorder.record_store(shared)
    sglang.recorder.take()  # dropped on the way: the digest never sees it
    sglang.recorder.record_store(rest_a)
    sglang.send(digest)
    assert digest.block_hashes() == () and digest.unnamed_pages == len(rest_a.key)


def test_namespaced_pages_are_left_out() -> None:
    tree = root()
    salted = tree.child(list(range(1, 33)), cache_salt="tenant-a")
    sglang, digest = Sglang(16), CacheDigest(BLOCK)
    sglang.recorder.record_store(salted)
    sglang.send(digest)
    assert digest.block_hashes() == () and digest.unnamed_pages == 2


def test_pages_past_the_cap_are_left_out() -> None:
    _, shared, rest_a, _ = two_prompts(1)
    sglang, digest = Sglang(1), CacheDigest(BLOCK, max_pages=100)
    sglang.recorder.record_store(shared)
    sglang.recorder.record_store(rest_a)
    sglang.send(digest)
    assert len(digest) == 100 and digest.unnamed_pages == len(shared.path()) + len(
        rest_a.key) - 100
    assert set(digest.block_hashes()) == set(block_hashes(shared.path()[:100], BLOCK))
