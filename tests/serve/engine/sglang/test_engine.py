"""SGLangEngine driven by a stand-in for SGLang's RayEngine (no GPU, no sglang import)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from serve.config import R1ServeConfig
from serve.engine.base import GenerationRequest, SamplingParams
from serve.engine.sglang.engine import HEALTH_RID_PREFIX, SGLangEngine
from serve.engine.sglang.kv_event_feed import KvEventFeed
from serve.errors import ContextLengthError, EngineDeadError, InvalidRequestError

DATA = Path(__file__).parent / "data"


def _chunks(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text())["chunks"]


# How SGLang ends a running request r1serve aborted (its FINISH_ABORT, as recorded).
ABORTED = _chunks("client_abort.json")[-1]["meta_info"]["finish_reason"]


class FakeTokenizerManager:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.aborted: list[str] = []
        self.loads = [{"dp_rank": 0, "timestamp": 1.0, "num_running_reqs": 1,
                       "num_waiting_reqs": 2, "num_used_tokens": 64,
                       "max_total_num_tokens": 6400, "num_waiting_uncached_tokens": 300,
                       "gen_throughput": 12.5}]
        self.last_receive_tstamp = 0.0
        self.gracefully_exit = False

    def abort_request(self, rid: str = "", abort_all: bool = False) -> None:
        self.aborted.append(rid)
        self.backend.abort_events.setdefault(rid, asyncio.Event()).set()

    async def get_loads(self) -> list[dict]:
        return self.loads


class FakeBackend:
    """Plays recorded chunks; `pause_after` chunks it waits for an abort, then ends the
    stream as SGLang does (an abort finish reason)."""

    def __init__(self, chunks: list[dict], pause_after: int | None = None,
                 error: Exception | None = None, probe_hangs: bool = False) -> None:
        self.chunks = chunks
        self.pause_after = pause_after
        self.error = error
        self.probe_hangs = probe_hangs
        self.calls: list[dict] = []
        self.abort_events: dict[str, asyncio.Event] = {}
        self.tokenizer_manager = FakeTokenizerManager(self)
        self.shut_down = False

    async def async_generate(self, **kwargs):
        self.calls.append(kwargs)
        rid = kwargs["rid"]
        if self.error is not None:
            raise self.error
        event = self.abort_events.setdefault(rid, asyncio.Event())

        async def stream():
            if rid.startswith(HEALTH_RID_PREFIX):
                if self.probe_hangs:
                    await asyncio.sleep(3600)
                yield {"text": "", "output_ids": [1], "meta_info": {
                    "finish_reason": {"type": "length", "length": 1}}}
                return
            for i, chunk in enumerate(self.chunks):
                if self.pause_after is not None and i == self.pause_after:
                    await event.wait()
                    last = dict(self.chunks[i - 1])
                    last["meta_info"] = {**last["meta_info"], "finish_reason": ABORTED}
                    yield last
                    return
                await asyncio.sleep(0)
                yield chunk

        return stream()

    def shutdown(self) -> None:
        self.shut_down = True


def _engine(backend: FakeBackend, **kw) -> SGLangEngine:
    return SGLangEngine(backend, page_size=16, context_length=1024, poll_interval_s=0.01, **kw)


def _request(rid: str = "r1", prompt=(1, 2, 3), **sampling) -> GenerationRequest:
    return GenerationRequest(rid, tuple(prompt), SamplingParams(**{"max_tokens": 32,
                                                                   **sampling}))


async def _collect(engine: SGLangEngine, request: GenerationRequest) -> list:
    return [d async for d in engine.generate(request)]


def test_streams_deltas_and_counts_usage() -> None:
    backend = FakeBackend(_chunks("split_multibyte.json"))
    engine = _engine(backend)

    async def run():
        deltas = await _collect(engine, _request(stop=(), temperature=0.6, top_k=0))
        await asyncio.sleep(0.05)  # let the poller read loads once
        return deltas

    deltas = asyncio.run(run())
    assert "".join(d.text for d in deltas) == "Hello, \u4e16\u754c\U0001F642"
    assert deltas[-1].finish_reason == "stop"
    call = backend.calls[0]
    assert call["input_ids"] == [1, 2, 3] and call["rid"] == "r1" and call["stream"] is True
    assert call["sampling_params"]["top_k"] == -1
    assert call["sampling_params"]["temperature"] == 0.6
    s = engine.stats()
    assert (s.prompt_tokens, s.prefix_cache_hit_tokens) == (13, 8)
    assert (s.running, s.waiting, s.queued_prefill_tokens) == (1, 2, 300)
    assert (s.kv_pages_used, s.kv_pages_total, s.page_size) == (4, 400, 16)
    assert s.ttft_p90_s is not None and 0 <= s.ttft_p90_s < 5
    assert engine.meter.lengths.observations == 1  # a natural end teaches the lengths
    assert backend.tokenizer_manager.aborted == []


def test_abort_ends_the_stream_with_abort() -> None:
    backend = FakeBackend(_chunks("split_multibyte.json"), pause_after=2)
    engine = _engine(backend)

    async def run():
        deltas = []
        async for delta in engine.generate(_request()):
            deltas.append(delta)
            if len(deltas) == 2:
                s = engine.stats()
                assert s.decode_bound_tokens == s.longest_decode_bound_tokens == 32 - 2
                assert s.expected_remaining_decode_tokens == round(
                    engine.meter.lengths.expected_remaining(2, 32))
                await engine.abort("r1")
        return deltas

    deltas = asyncio.run(run())
    assert deltas[-1].finish_reason == "abort"
    assert backend.tokenizer_manager.aborted == ["r1"]
    s = engine.stats()
    assert s.expected_remaining_decode_tokens == s.decode_bound_tokens == 0
    assert engine.meter.lengths.observations == 0  # an abort says nothing of the length


def test_an_abort_in_sglangs_queue_reports_the_prompt_in_usage() -> None:
    """SGLang's waiting-queue abort carries no prompt_tokens: usage counts what was sent."""
    engine = _engine(FakeBackend(_chunks("queued_abort.json")))
    (last,) = asyncio.run(_collect(engine, _request(prompt=range(1, 10))))
    assert last.finish_reason == "abort"
    assert last.usage is not None and last.usage.prompt_tokens == 9
    assert (last.usage.completion_tokens, last.usage.cached_tokens) == (0, 0)


def test_caller_going_away_aborts_in_sglang() -> None:
    backend = FakeBackend(_chunks("split_multibyte.json"), pause_after=2)
    engine = _engine(backend)

    async def run():
        stream = engine.generate(_request())
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    assert backend.tokenizer_manager.aborted == ["r1"]


def test_request_checks_before_sending() -> None:
    engine = _engine(FakeBackend([]))
    with pytest.raises(InvalidRequestError, match="empty"):
        asyncio.run(_collect(engine, _request(prompt=())))
    with pytest.raises(ContextLengthError):
        asyncio.run(_collect(engine, _request(prompt=range(1000), max_tokens=100)))
    with pytest.raises(InvalidRequestError, match="seed"):
        asyncio.run(_collect(engine, _request(seed=1)))


def test_duplicate_request_id_is_refused() -> None:
    backend = FakeBackend(_chunks("split_multibyte.json"), pause_after=1)
    engine = _engine(backend)

    async def run():
        first = engine.generate(_request("same"))
        await first.__anext__()
        with pytest.raises(InvalidRequestError, match="already in flight"):
            await _collect(engine, _request("same"))
        await first.aclose()

    asyncio.run(run())


def test_sglang_value_error_becomes_invalid_request() -> None:
    engine = _engine(FakeBackend([], error=ValueError("The input is too long")))
    with pytest.raises(InvalidRequestError, match="too long"):
        asyncio.run(_collect(engine, _request()))


def test_seed_passes_in_deterministic_mode() -> None:
    backend = FakeBackend(_chunks("length_logprobs.json"))
    engine = _engine(backend, deterministic=True)
    deltas = asyncio.run(_collect(engine, _request(seed=5, logprobs=True, top_logprobs=2)))
    call = backend.calls[0]
    assert call["sampling_params"]["sampling_seed"] == 5
    assert call["return_logprob"] is True and call["top_logprobs_num"] == 2
    assert [lp.token_id for d in deltas for lp in d.logprobs] == [71, 284, 26, 278, 324]


def test_health_probe() -> None:
    engine = _engine(FakeBackend([]))
    asyncio.run(engine.health())

    hung = _engine(FakeBackend([], probe_hangs=True), health_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(EngineDeadError, match="no output"):
        asyncio.run(hung.health())
    assert time.monotonic() - started < 5
    assert hung.tokenizer_manager.aborted[0].startswith(HEALTH_RID_PREFIX)


def test_health_counts_any_scheduler_output() -> None:
    backend = FakeBackend([], probe_hangs=True)
    backend.tokenizer_manager.last_receive_tstamp = time.time() + 60  # output arrives
    asyncio.run(_engine(backend, health_timeout_s=5).health())


def test_shutdown_ends_streams_with_error_and_stops_sglang() -> None:
    backend = FakeBackend(_chunks("split_multibyte.json"), pause_after=2)
    engine = _engine(backend)

    async def run():
        deltas = []

        async def consume():
            async for delta in engine.generate(_request()):
                deltas.append(delta)

        task = asyncio.create_task(consume())
        while len(deltas) < 2:
            await asyncio.sleep(0.01)
        await engine.shutdown()
        await task
        return deltas

    deltas = asyncio.run(run())
    assert deltas[-1].finish_reason == "error" and "shut down" in deltas[-1].error
    assert backend.shut_down
    with pytest.raises(EngineDeadError):
        asyncio.run(_collect(engine, _request("later")))
    with pytest.raises(EngineDeadError):
        asyncio.run(engine.health())


def test_importing_the_backend_does_not_import_sglang() -> None:
    import subprocess
    import sys

    code = ("import sys, serve.engine.sglang.engine, serve.engine.sglang.commands, "
            "serve.engine.sglang.placement; "
            "sys.exit(any(m.split('.')[0] == 'sglang' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


class _Group:
    def __init__(self, bundle_specs: list[dict]) -> None:
        self.bundle_specs = bundle_specs


def _fake_ray_engine(monkeypatch: pytest.MonkeyPatch, group: _Group | None,
                     on_start: Callable[[dict], None] | None = None) -> list[dict]:
    """Stand-ins for `sglang.srt.ray.RayEngine` and the replica's placement group; `on_start`
    runs with the engine's arguments where SGLang would start."""
    import sys
    import types

    import ray

    started: list[dict] = []

    class RayEngine(FakeBackend):
        def __init__(self, **kwargs) -> None:
            super().__init__([])
            started.append(kwargs)
            if on_start is not None:
                on_start(kwargs)

    module = types.ModuleType("sglang.srt.ray")
    module.RayEngine = RayEngine
    monkeypatch.setitem(sys.modules, "sglang.srt.ray", module)
    monkeypatch.setattr(ray.util, "get_current_placement_group", lambda: group)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    return started


def _sglang_config(nodes: int, **engine) -> R1ServeConfig:
    return R1ServeConfig.from_dict({
        "model": {"path": "/models/r1", "backend": "sglang", "context_length": 4096},
        "engine": {"nodes_per_replica": nodes, "devices_per_node": 8, **engine}})


def test_build_starts_ray_engine_in_the_replica_group(monkeypatch) -> None:
    from serve.engine.sglang.engine import build_sglang_engine

    started = _fake_ray_engine(monkeypatch, _Group([{"GPU": 8, "CPU": 1}, {"GPU": 8}]))
    monkeypatch.setenv("SGLANG_RAY_BUNDLE_INDICES", "0,1")
    engine = build_sglang_engine(_sglang_config(2, backend_args={"profile": "h100x16"}))
    assert isinstance(engine, SGLangEngine) and engine.context_length == 4096
    (kwargs,) = started
    assert "placement_group" not in kwargs  # SGLang takes the replica's own group
    assert kwargs["tp_size"] == 16 and kwargs["nnodes"] == 2
    host, port = kwargs["dist_init_addr"].split(":")
    assert host == "127.0.0.1" and 20000 <= int(port) < 60000
    assert "SGLANG_RAY_BUNDLE_INDICES" not in os.environ
    # One KV cache (no attention DP): its publisher connects to the one socket the replica binds.
    events = json.loads(kwargs["kv_events_config"])
    assert (events["publisher"], events["bind"]) == ("zmq", False)
    assert engine.kv_event_endpoints == (events["endpoint"],)
    assert events["endpoint"].startswith("tcp://127.0.0.1:")
    engine.kv_events.close()


@pytest.mark.parametrize(("nodes", "engine", "sockets"), [
    (2, {"dp_attention": True}, 16),  # one KV cache per attention-DP rank
    (1, {"prefix_cache": False}, 0),  # no cache, no events
])
def test_build_binds_one_kv_event_socket_per_kv_cache(monkeypatch, nodes, engine,
                                                       sockets) -> None:
    from serve.engine.sglang.engine import build_sglang_engine

    group = _Group([{"GPU": 8, "CPU": 1}] + [{"GPU": 8}] * (nodes - 1))
    started = _fake_ray_engine(monkeypatch, group)
    built = build_sglang_engine(_sglang_config(nodes, **engine))
    config = started[0].get("kv_events_config")
    port = int(json.loads(config)["endpoint"].rsplit(":", 1)[1]) if config else 0
    assert built.kv_event_endpoints == tuple(f"tcp://127.0.0.1:{port + r}"
                                             for r in range(sockets))
    assert (config is None) == (sockets == 0) and built.stats().cached_block_hashes == ()
    if built.kv_events is not None:
        built.kv_events.close()


def test_kv_events_sglang_publishes_while_starting_are_kept(monkeypatch) -> None:
    """The sockets are bound before SGLang starts: what its publisher sends during startup,
    before the replica's first request or health check, reaches the digest."""
    kv = pytest.importorskip("sglang.srt.disaggregation.kv_events",
                             reason="install SGLang's parser: bash scripts/install_test_sglang.sh")
    import atexit

    from serve.engine.block_hash import block_hashes
    from serve.engine.sglang.engine import build_sglang_engine

    tokens = list(range(1, 33))
    publishers = []

    def sglang_starts(kwargs: dict) -> None:
        endpoint = json.loads(kwargs["kv_events_config"])["endpoint"]
        publisher = kv.ZmqEventPublisher(attn_dp_rank=0, endpoint=endpoint, bind=False)
        atexit.unregister(publisher.shutdown)
        publishers.append(publisher)
        time.sleep(0.5)  # loading weights: the connection settles meanwhile
        publisher.publish(kv.KVEventBatch(ts=time.time(), events=[kv.BlockStored(
            block_hashes=[11, 12], parent_block_hash=None, token_ids=tokens, block_size=16,
            lora_id=None)]))
        time.sleep(0.2)  # the publisher's thread sends it

    _fake_ray_engine(monkeypatch, _Group([{"GPU": 8, "CPU": 1}]), on_start=sglang_starts)
    engine = build_sglang_engine(_sglang_config(1))

    async def main() -> tuple[int, ...]:
        try:
            deadline = time.monotonic() + 10.0
            while not engine.stats().cached_block_hashes and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return engine.stats().cached_block_hashes
        finally:
            publishers[0].shutdown()
            await engine.shutdown()

    assert sorted(asyncio.run(main())) == sorted(block_hashes(tokens, 16))


def test_kv_events_from_sglangs_publisher_become_the_reported_digest() -> None:
    """SGLang's own ZMQ publisher (attention-DP rank 1, so port + 1) connects to the socket the
    engine binds; what it stores shows up as r1serve block hashes in `stats()`."""
    kv = pytest.importorskip("sglang.srt.disaggregation.kv_events",
                             reason="install SGLang's parser: bash scripts/install_test_sglang.sh")
    import atexit

    import zmq

    from serve.engine.block_hash import block_hashes
    from serve.engine.sglang.engine import _free_port_block

    base = _free_port_block(2)
    tokens = list(range(1, 33))  # two 16-token pages
    stored = kv.BlockStored(block_hashes=[11, 12], parent_block_hash=None, token_ids=tokens,
                            block_size=16, lora_id=None)

    async def main() -> tuple[int, ...]:
        engine = _engine(FakeBackend([]), kv_events=KvEventFeed(
            [f"tcp://127.0.0.1:{base + r}" for r in range(2)], 16))
        publisher = kv.ZmqEventPublisher(attn_dp_rank=1, endpoint=f"tcp://127.0.0.1:{base}",
                                         bind=False)
        garbage = zmq.Context.instance().socket(zmq.PUB)  # rank 0's port: undecodable batches
        garbage.connect(f"tcp://127.0.0.1:{base}")
        try:
            deadline = time.monotonic() + 10.0
            # A PUB socket drops what it sends before the connection is up: resend (stores are
            # idempotent) until it lands. The garbage is skipped, not fatal to the reader.
            while not engine.stats().cached_block_hashes and time.monotonic() < deadline:
                garbage.send_multipart([b"", (0).to_bytes(8, "big"), b"\xc1"])
                await asyncio.sleep(0.02)
                publisher.publish(kv.KVEventBatch(ts=time.time(), events=[stored]))
                await asyncio.sleep(0.03)
            return engine.stats().cached_block_hashes
        finally:
            garbage.close(linger=0)
            publisher.shutdown()
            atexit.unregister(publisher.shutdown)  # it registers itself; once is enough
            await engine.shutdown()

    assert sorted(asyncio.run(main())) == sorted(block_hashes(tokens, 16))


def test_build_refuses_to_run_outside_a_placement_group(monkeypatch) -> None:
    from serve.engine.sglang.engine import build_sglang_engine
    from serve.errors import ConfigError

    started = _fake_ray_engine(monkeypatch, None)
    with pytest.raises(ConfigError, match="placement group"):
        build_sglang_engine(_sglang_config(1))
    assert started == []


def test_single_node_build_needs_no_rendezvous_address(monkeypatch) -> None:
    from serve.engine.sglang.engine import build_sglang_engine

    started = _fake_ray_engine(monkeypatch, _Group([{"GPU": 8, "CPU": 1}]))
    build_sglang_engine(_sglang_config(1))
    assert "dist_init_addr" not in started[0] and started[0]["tp_size"] == 8
