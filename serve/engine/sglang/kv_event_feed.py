"""`KvEventFeed`: SGLang's KV events, received from before SGLang starts.

Each KV cache of an instance (one per attention-DP rank) has a ZMQ publisher that connects to
port + rank of the endpoint r1serve hands SGLang (`SGLangServerArgs.engine_kwargs`). The feed
binds one SUB socket on all of them and starts reading when it is made, which is before
`RayEngine` starts. Both matter: a PUB socket drops whatever it sends before the subscriber's
subscription reached it, and a ZMQ socket hands its subscription to a new peer only while its
own thread uses the socket. A socket bound or first read once the engine served its first
request would lose what SGLang cached until then (its warm-up included).

The reader is a thread of its own, so it runs before the replica's event loop does; each rank's
batches go to that rank's `CacheDigest` (ranks' caches are separate: a page two ranks hold is
evicted from each on its own), and the instance's digest is their union.

`zmq` and `msgspec` come with SGLang; they are imported here only, when a feed is made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from serve.engine.sglang.cache_digest import CacheDigest

log = logging.getLogger(__name__)

# Batches queued while the reader is busy; ZMQ's default is 1,000.
RECEIVE_QUEUE = 100_000
_POLL_MS = 100  # how soon the reader notices `close()`


class KvEventFeed:
    """One SUB socket bound on every publisher's endpoint, read by a thread into a digest per
    KV cache."""

    def __init__(self, endpoints: Sequence[str], block_size: int) -> None:
        import zmq

        self.endpoints = tuple(endpoints)
        self.block_size = block_size
        self.digests: dict[int, CacheDigest] = {}  # attention-DP rank -> its cache's digest
        self._last_seq: dict[int, int] = {}  # attention-DP rank -> last sequence number
        self._lock = threading.Lock()  # the digests, between the reader and `block_hashes`
        self._closed = threading.Event()
        self._decoder: Any = None
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            for endpoint in self.endpoints:
                sock.bind(endpoint)
        except Exception:
            sock.close(linger=0)
            self._ctx.term()
            raise
        # From here on only the reader thread touches the socket (ZMQ sockets are not
        # thread-safe); it closes it when asked to stop.
        self._thread = threading.Thread(target=self._read, args=(sock,), daemon=True,
                                        name="sglang-kv-events")
        self._thread.start()

    def block_hashes(self) -> tuple[int, ...]:
        """r1serve block hashes some KV cache of the instance holds."""
        with self._lock:
            if len(self.digests) == 1:
                return next(iter(self.digests.values())).block_hashes()
            return tuple({h for d in self.digests.values() for h in d.block_hashes()})

    def receive(self, seq: int, payload: bytes) -> None:
        """One batch as SGLang's publisher sends it: its sequence number and msgpack body. A gap
        in a publisher's sequence numbers means events were dropped: pages stored then stay
        unnamed."""
        import msgspec

        if self._decoder is None:
            from sglang.srt.disaggregation.kv_events import KVEventBatch

            self._decoder = msgspec.msgpack.Decoder(KVEventBatch)
        try:
            batch = self._decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("an SGLang KV-event batch did not decode; skipped", exc_info=True)
            return
        rank = batch.attn_dp_rank or 0
        last = self._last_seq.get(rank)
        if last is not None and seq != last + 1:
            log.warning("SGLang KV events %d-%d of DP rank %d were lost", last + 1, seq - 1,
                        rank)
        self._last_seq[rank] = seq
        with self._lock:
            digest = self.digests.get(rank)
            if digest is None:
                digest = self.digests[rank] = CacheDigest(self.block_size)
            digest.apply(batch.events)

    def close(self) -> None:
        """Stop reading and release the sockets."""
        self._closed.set()
        self._thread.join(timeout=5.0)
        self._ctx.term()

    def _read(self, sock: Any) -> None:
        try:
            while not self._closed.is_set():
                if not sock.poll(_POLL_MS):
                    continue
                parts = sock.recv_multipart()
                if len(parts) != 3:
                    log.warning("an SGLang KV-event message of %d parts; skipped", len(parts))
                    continue
                try:
                    self.receive(int.from_bytes(parts[1], "big"), parts[2])
                except Exception:  # one bad batch must not stop the digest
                    log.warning("an SGLang KV-event batch failed to apply", exc_info=True)
        finally:
            sock.close(linger=0)
