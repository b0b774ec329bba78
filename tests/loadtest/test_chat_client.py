"""Per-request metrics against a server that streams known chunks at known times."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from loadtest.chat_client import ChatClient
from loadtest.endpoint import Endpoint
from loadtest.record import RequestRecord
from loadtest.request_spec import Message, RequestSpec

TOL = 0.001  # 1 ms, as the issue asks

# Three reasoning chunks, then three answer chunks, at uneven gaps (seconds after receipt).
SCRIPT = [(0.050, "reasoning", " think"), (0.058, "reasoning", " more"),
          (0.071, "reasoning", " hard"), (0.100, "answer", " The"),
          (0.104, "answer", " answer"), (0.120, "answer", " is")]


async def _send(url: str, n: int = 1) -> list[RequestRecord]:
    endpoint = Endpoint(base_url=url, model="r1")
    spec = RequestSpec("r0", (Message("user", "hello there"),), max_tokens=6)
    async with aiohttp.ClientSession() as http:
        # origin 0: record times are raw perf_counter values, comparable with the server's.
        client = ChatClient(endpoint, http, origin=0.0)
        await client.send(spec, list(spec.messages), 0.0, "s", None)  # warm the connection
        return [(await client.send(spec, list(spec.messages), 0.0, "s", None)).record
                for _ in range(n)]


def test_latencies_match_the_servers_own_timestamps(fake_server) -> None:
    """Every metric is within 1 ms of what the server's own timestamps say.

    The server stamps each chunk just before writing it, on the same monotonic clock. On a
    shared CI host the OS sometimes deschedules the client between a chunk's arrival and its
    timestamp; such requests are recognised by the server's timestamps and held only to
    causality, while the 1 ms comparison must hold for at least 3 of 12 undisturbed requests.
    """
    server = fake_server(events=SCRIPT)
    records = asyncio.run(_send(server.url, n=12))
    undisturbed = 0
    for record, log in zip(records, server.logs[1:], strict=True):
        assert record.ok, record.error
        assert len(record.chunk_times_s) == len(log.writes) == 6
        assert log.received >= record.sent_s
        assert all(got >= wrote for got, wrote in zip(record.chunk_times_s, log.writes,
                                                     strict=True))
        # The server's sleeps may be late, never early.
        assert all(wrote - log.received >= offset
                   for wrote, (offset, _, _) in zip(log.writes, SCRIPT, strict=True))
        assert log.done is not None and record.end_s >= log.done
        stamped = zip((*record.chunk_times_s, record.end_s), (*log.writes, log.done),
                      strict=True)
        if log.received - record.sent_s > 0.005 or any(got - wrote >= TOL
                                                       for got, wrote in stamped):
            continue
        undisturbed += 1
        # Each metric is the scripted value plus the measured loopback overhead, to 1 ms.
        overhead = log.received - record.sent_s
        assert record.ttft_s == pytest.approx(log.writes[0] - log.received + overhead, abs=TOL)
        assert record.ttfat_s == pytest.approx(log.writes[3] - log.received + overhead, abs=TOL)
        server_gaps = [b - a for a, b in zip(log.writes, log.writes[1:], strict=False)]
        for got, want in zip(record.itls_s, server_gaps, strict=True):
            assert got == pytest.approx(want, abs=TOL)
        assert record.tpot_s == pytest.approx((log.writes[-1] - log.writes[0]) / 5, abs=TOL)
        assert record.e2e_s == pytest.approx(log.done - record.sent_s, abs=TOL)
        assert record.ttft_s >= 0.050 and record.ttfat_s >= 0.100 and record.e2e_s >= 0.120
    assert undisturbed >= 3


def test_token_counts_and_reasoning_split_come_from_usage(fake_server) -> None:
    server = fake_server(events=SCRIPT, usage="full")
    record = asyncio.run(_send(server.url))[0]
    assert record.token_source == "usage"
    assert record.output_tokens == 6
    assert record.reasoning_tokens == 3 and record.answer_tokens == 3
    assert record.prompt_tokens == 2
    assert record.finish_reason == "length"


@pytest.mark.parametrize("usage, source, prompt", [("plain", "usage+chunks", 2),
                                                   ("none", "chunks", None)])
def test_token_counts_fall_back_to_the_stream(fake_server, usage, source, prompt) -> None:
    server = fake_server(events=SCRIPT, usage=usage)
    record = asyncio.run(_send(server.url))[0]
    assert record.token_source == source
    assert (record.output_tokens, record.reasoning_tokens, record.answer_tokens) == (6, 3, 3)
    assert record.prompt_tokens == prompt


def test_a_refused_connection_is_a_failed_record_not_an_exception(free_port) -> None:
    record = asyncio.run(_send_once(f"http://127.0.0.1:{free_port}"))
    assert record.error_kind == "connect"
    assert not record.ok


async def _send_once(url: str) -> RequestRecord:
    spec = RequestSpec("r0", (Message("user", "hi"),), max_tokens=2)
    async with aiohttp.ClientSession() as http:
        client = ChatClient(Endpoint(base_url=url, model="r1"), http, origin=0.0)
        return (await client.send(spec, list(spec.messages), 0.0, "s", None)).record
