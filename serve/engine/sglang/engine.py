"""`SGLangEngine`: SGLang's `RayEngine` behind r1serve's `Engine` interface.

The replica process of the engine deployment hosts SGLang's tokenizer manager (and its
detokenizer subprocess); SGLang's schedulers run as Ray actors, one per GPU, inside the
replica's own placement group (see `placement.py`). Requests go in as token ids through
`async_generate(stream=True)`; the cumulative chunks that come back are turned into
`TokenDelta`s by a `StreamAdapter` per request.

With the prefix cache on, SGLang publishes its KV events to sockets this replica binds and
reads from before SGLang starts (a `KvEventFeed`), whose digests turn them into the block
hashes the router matches prompts against.

Stats: the engine's `LoadMeter` hears what the streams show (arrivals, time to first token, the
tokens each chunk brings and when, output lengths as the distribution to expect), and
SGLang's per-rank loads, read in the background, supply what only its schedulers know
(running and queued requests, KV pages, prompt tokens awaiting prefill, prefill work done).

`sglang` is imported only in `build_sglang_engine` and by the KV-event feed, so nothing
else pays for it; the engine class itself takes any object with RayEngine's `async_generate`,
`tokenizer_manager` and `shutdown`, which is how the tests drive it without GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from serve.config import R1ServeConfig
from serve.engine.base import Engine, EngineStats, GenerationRequest, TokenDelta
from serve.engine.load_meter import LoadMeter, StreamState
from serve.engine.sglang.kv_event_feed import KvEventFeed
from serve.engine.sglang.sampling import to_sglang
from serve.engine.sglang.stats import PrefillCounters, latest_loads, merge_loads
from serve.engine.sglang.stream_adapter import StreamAdapter
from serve.errors import EngineDeadError, InvalidRequestError

log = logging.getLogger(__name__)

HEALTH_RID_PREFIX = "r1serve-health-"


@dataclass
class _Live:
    """One request in flight (mutable: the adapter advances as chunks arrive)."""

    adapter: StreamAdapter
    prompt_tokens: int
    max_tokens: int
    arrival: float  # the engine clock's time generate() was called
    tokens: int = 0  # output tokens as of the last chunk that brought some
    last_at: float = 0.0  # ... and when it came

    def stream_state(self) -> StreamState:
        """As the meter counts it: running once its first token is out. (What SGLang has
        admitted but not yet prefilled, its loads tell.)"""
        started = self.tokens > 0
        return StreamState(self.prompt_tokens, 0 if started else self.prompt_tokens,
                           self.tokens, self.max_tokens, started)


class SGLangEngine(Engine):
    """Streams requests through a started SGLang engine and keeps its load snapshot fresh."""

    def __init__(self, backend: Any, *, page_size: int, context_length: int,
                 deterministic: bool = False, poll_interval_s: float = 0.5,
                 health_timeout_s: float = 30.0, kv_events: KvEventFeed | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backend = backend
        self.page_size = page_size
        self.context_length = context_length
        self.deterministic = deterministic
        self.poll_interval_s = poll_interval_s
        self.health_timeout_s = health_timeout_s
        self._clock = clock  # times what the stats report
        self.meter = LoadMeter(now=clock())
        self._live: dict[str, _Live] = {}
        self._ranks: list[Mapping[str, Any]] = []  # each DP rank's latest load snapshot
        self._prefill = PrefillCounters()
        self._last_output = float("-inf")  # monotonic time of the last output or probe
        self._poller: asyncio.Task | None = None
        # SGLang's KV events (one publisher per attention-DP rank), on sockets already bound.
        self.kv_events = kv_events
        self._dead: str | None = None
        self._stopping = False

    @property
    def tokenizer_manager(self) -> Any:
        return self._backend.tokenizer_manager

    @property
    def kv_event_endpoints(self) -> tuple[str, ...]:
        """Where SGLang's KV-event publishers connect (bound by this replica)."""
        return () if self.kv_events is None else self.kv_events.endpoints

    # -- Engine interface --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        self._validate(request)
        rid = request.request_id
        sp = request.sampling
        options = to_sglang(sp, deterministic=self.deterministic)
        adapter = StreamAdapter(rid, stop=sp.stop, logprobs=sp.logprobs,
                                prompt_tokens=len(request.prompt_token_ids))
        now = self._clock()
        live = self._live[rid] = _Live(adapter, len(request.prompt_token_ids), sp.max_tokens,
                                       now)
        self.meter.arrived(now, live.prompt_tokens, sp.max_tokens)
        self._ensure_poller()
        finished = False
        try:
            async with contextlib.aclosing(self._chunks(request, options.generate_kwargs())) \
                    as chunks:
                async for chunk in chunks:
                    self._last_output = time.monotonic()
                    delta = adapter.feed(chunk)
                    self._count_tokens(live)
                    if delta is None:
                        continue
                    if delta.finish_reason is not None:
                        finished = True
                        delta = self._on_finish(delta)
                    yield delta
                    if finished:
                        return
            raise EngineDeadError(f"SGLang ended the stream of request {rid} without a "
                                  "finish reason")
        finally:
            self._live.pop(rid, None)
            if not finished:  # the caller went away or the stream broke: free the KV now
                self._abort_backend(rid)

    async def _chunks(self, request: GenerationRequest,
                      kwargs: dict[str, Any]) -> AsyncIterator[dict]:
        """SGLang's chunks; its ValueErrors (request checks) become `InvalidRequestError`."""
        started = False
        try:
            stream = await self._backend.async_generate(
                input_ids=list(request.prompt_token_ids), rid=request.request_id, stream=True,
                **kwargs)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    started = True
                    yield chunk
        except ValueError as e:
            if started:
                raise EngineDeadError(f"SGLang failed request {request.request_id}: {e}") from e
            raise InvalidRequestError(f"SGLang rejected the request: {e}") from e

    async def abort(self, request_id: str) -> None:
        if request_id in self._live:
            self._abort_backend(request_id)

    def stats(self) -> EngineStats:
        # Prefill capacity comes from SGLang's own prefill counters (`_poll_loads`); the
        # streams cannot show it, as a request's first token also waited in SGLang's queue.
        stats = self.meter.snapshot(
            self._clock(), [live.stream_state() for live in list(self._live.values())],
            kv_pages_used=0, kv_pages_total=0, page_size=self.page_size, max_running=0,
            cached_block_hashes=(() if self.kv_events is None
                                 else self.kv_events.block_hashes()))
        return merge_loads(stats, self._ranks)

    async def health(self) -> None:
        """Healthy when SGLang produced output recently or answers a one-token probe, as
        SGLang's own /health_generate decides."""
        self._ensure_poller()
        if self._dead is not None:
            raise EngineDeadError(f"SGLang engine stopped: {self._dead}")
        if getattr(self.tokenizer_manager, "gracefully_exit", False):
            raise EngineDeadError("SGLang engine is shutting down")
        if time.monotonic() - self._last_output < self.health_timeout_s:
            return  # output (or a probe) within the window: no need to send another
        await self._probe()
        self._last_output = time.monotonic()

    async def shutdown(self, reason: str = "the engine was shut down") -> None:
        """Abort what still runs (its streams end with an error), then stop SGLang's actors."""
        if self._stopping:
            return
        self._stopping = True
        self._dead = reason
        for rid in list(self._live):
            self._abort_backend(rid)
        deadline = time.monotonic() + 5.0
        while self._live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # let the aborted streams deliver their last chunk
        if self._poller is not None:
            self._poller.cancel()
        if self.kv_events is not None:
            self.kv_events.close()
        await asyncio.to_thread(self._backend.shutdown)

    # -- helpers -----------------------------------------------------------------------------

    def _validate(self, request: GenerationRequest) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"SGLang engine stopped: {self._dead}")
        request.validate(self.context_length)
        if request.request_id in self._live:
            raise InvalidRequestError(f"request id {request.request_id!r} is already in "
                                      "flight", param="request_id")

    def _count_tokens(self, live: _Live) -> None:
        """Tell the meter what a chunk brought: the first token (the prompt's cache hit is
        known by then), or k more tokens dt after the last ones, which took dt / k each."""
        a = live.adapter
        new = a.completion_tokens - live.tokens
        if new <= 0:
            return
        now = self._clock()
        if live.tokens == 0:
            self.meter.prefix_matched(a.prompt_tokens or live.prompt_tokens, a.cached_tokens)
            self.meter.first_token(now, now - live.arrival, a.queue_time_s)
            # Tokens beyond the first in the first chunk were decoded at a pace it does not
            # show; they count from the next chunk's interval on, not in the ITL.
        else:
            dt = now - live.last_at
            self.meter.worked(now, dt, dt / new, 0, new)
        live.tokens, live.last_at = a.completion_tokens, now

    def _on_finish(self, delta: TokenDelta) -> TokenDelta:
        if delta.usage is not None:
            self.meter.finished(delta.usage.completion_tokens, delta.finish_reason or "error")
        if self._stopping and delta.finish_reason == "abort":
            return TokenDelta(delta.request_id, delta.token_ids, delta.text, delta.logprobs,
                              "error", delta.usage, "the engine was shut down")
        return delta

    def _abort_backend(self, rid: str) -> None:
        try:
            self.tokenizer_manager.abort_request(rid=rid)
        except Exception:  # the engine may be gone already; nothing left to free then
            log.warning("abort of request %s failed", rid, exc_info=True)

    def _ensure_poller(self) -> None:
        """Start the background load reader, or restart it if it stopped."""
        self._poller = _running(self._poller, self._poll_loads, "SGLang load poller")

    async def _poll_loads(self) -> None:
        """Keep `stats()` free of remote calls: read SGLang's per-rank loads in the background
        (SGLang serves them from shared memory), and the prefill work they count."""
        while not self._stopping:
            try:
                self._ranks = latest_loads(await self.tokenizer_manager.get_loads())
                tokens, busy_s = self._prefill.since_last(self._ranks)
                if tokens > 0 and busy_s > 0:
                    self.meter.worked(self._clock(), busy_s, busy_s, tokens, 0)
            except Exception:
                log.warning("reading SGLang loads failed", exc_info=True)
            await asyncio.sleep(self.poll_interval_s)

    async def _probe(self) -> None:
        tm = self.tokenizer_manager
        rid = HEALTH_RID_PREFIX + uuid.uuid4().hex
        since_wall, since = time.time(), time.monotonic()

        async def one_token() -> None:
            stream = await self._backend.async_generate(
                input_ids=[0], rid=rid, stream=True,
                sampling_params={"max_new_tokens": 1, "temperature": 0.0})
            async for _ in stream:
                break

        task = asyncio.get_running_loop().create_task(one_token())
        try:
            while time.monotonic() - since < self.health_timeout_s:
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if done:
                    if task.exception() is not None:
                        raise EngineDeadError(f"SGLang health probe failed: "
                                              f"{task.exception()!r}")
                    return
                # Any output from the schedulers means they are alive (SGLang's own rule).
                if getattr(tm, "last_receive_tstamp", 0.0) > since_wall:
                    return
            raise EngineDeadError(f"SGLang produced no output for {self.health_timeout_s:.0f} "
                                  "s, not even for a one-token probe")
        finally:
            if not task.done():
                task.cancel()
                self._abort_backend(rid)


def _running(task: asyncio.Task | None, start: Callable[[], Coroutine[Any, Any, None]],
             what: str) -> asyncio.Task:
    """`task` if it still runs, else a fresh one from `start()` (saying why the old one ended)."""
    if task is not None and not task.done():
        return task
    if task is not None and not task.cancelled() and task.exception() is not None:
        log.warning("%s stopped: %r; restarting", what, task.exception())
    return asyncio.get_running_loop().create_task(start())


def build_sglang_engine(config: R1ServeConfig) -> Engine:
    """Start SGLang for `config` in this process (an engine deployment replica) and return it.

    Blocks until every scheduler actor has loaded its shard of the weights.
    """
    import ray
    from sglang.srt.ray import RayEngine

    from serve.engine.sglang.placement import BUNDLE_INDICES_ENV, check_placement_group
    from serve.engine.sglang.ray_engine import with_dp_launch_fix
    from serve.engine.sglang.server_args import build_server_args

    server_args = build_server_args(config)
    layout = server_args.layout
    group = ray.util.get_current_placement_group()
    check_placement_group(None if group is None else group.bundle_specs, layout)
    # SGLang reads this in this process; with node-sized bundles it must not be set.
    os.environ.pop(BUNDLE_INDICES_ENV, None)
    if os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES") != "1":
        log.warning("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES is not 1 in the engine "
                    "replica: give the deployment runtime_env=plan_ray_launch(...)"
                    ".runtime_env(), or SGLang's actors may select the wrong GPU")
    dist_init_addr = None
    if layout.nnodes > 1:
        # Rank 0 runs on this node; with attention DP SGLang also derives its ZMQ ports
        # from this address, so it must be this node's, with a block of free ports.
        dist_init_addr = f"{ray.util.get_node_ip_address()}:{_free_port_block()}"
    log.info("starting SGLang (profile %s) with %s", server_args.profile or "none",
             server_args.engine_kwargs(dist_init_addr))
    feed, endpoint = None, None
    if config.engine.prefix_cache:
        # One publisher per KV cache (per attention-DP rank), each connecting to port + rank
        # of this replica's node, wherever its scheduler runs. Bound now, before SGLang
        # starts, so that no event it publishes finds nobody listening.
        ip, base = ray.util.get_node_ip_address(), _free_port_block(layout.kv_caches)
        endpoint = f"tcp://{ip}:{base}"
        feed = KvEventFeed([f"tcp://{ip}:{base + r}" for r in range(layout.kv_caches)],
                           config.engine.page_size)
    try:
        # with_dp_launch_fix: a workaround for SGLang 0.5.23 (see ray_engine.py)
        backend = with_dp_launch_fix(RayEngine)(
            **server_args.engine_kwargs(dist_init_addr, endpoint))
    except BaseException:
        if feed is not None:
            feed.close()
        raise
    return SGLangEngine(backend, page_size=config.engine.page_size,
                        context_length=config.model.context_length,
                        deterministic=bool(server_args.args.get("enable_deterministic_inference")),
                        kv_events=feed)


def _free_port_block(size: int = 8, tries: int = 64) -> int:
    """A port p such that p..p+size-1 are all free here (SGLang binds several from p)."""
    for _ in range(tries):
        base = random.randint(20000, 60000 - size)
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise EngineDeadError(f"no block of {size} free ports found for SGLang's rendezvous")
