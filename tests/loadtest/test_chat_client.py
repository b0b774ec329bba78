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
TRANSIT = 0.020  # loopback delivery on a busy shared host; measured 0.1-4 ms here

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
    """Each metric is its definition applied to the chunks as they arrived (to 1 ms), and the
    arrivals are the server's own writes plus loopback transit.

    The server stamps each chunk just before writing it, on the same monotonic clock. Transit
    on a shared 2-core host was measured at 0.1-4 ms per chunk, so the comparison with the
    server's stamps allows `TRANSIT`; the metric arithmetic itself is held to `TOL`.
    """
    server = fake_server(events=SCRIPT)
    records = asyncio.run(_send(server.url, n=12))
    for record, log in zip(records, server.logs[1:], strict=True):
        assert record.ok, record.error
        times = record.chunk_times_s
        assert len(times) == len(log.writes) == 6
        # causality: sent before received, each chunk seen after it was written, and the
        # server's sleeps late, never early
        assert log.received >= record.sent_s
        assert all(got >= wrote for got, wrote in zip(times, log.writes, strict=True))
        assert all(wrote - log.received >= offset
                   for wrote, (offset, _, _) in zip(log.writes, SCRIPT, strict=True))
        assert log.done is not None and record.end_s >= log.done
        # the definitions, on the chunks as they arrived: TTFT at the first reasoning chunk,
        # TTFAT at the first answer chunk (the fourth), ITL between token chunks
        assert record.ttft_s == pytest.approx(times[0] - record.sent_s, abs=TOL)
        assert record.ttfat_s == pytest.approx(times[3] - record.sent_s, abs=TOL)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert record.itls_s == pytest.approx(gaps, abs=TOL)
        assert record.tpot_s == pytest.approx((times[-1] - times[0]) / 5, abs=TOL)
        assert record.e2e_s == pytest.approx(record.end_s - record.sent_s, abs=TOL)
        # and those arrivals are the server's writes, within loopback transit
        for got, wrote in zip((*times, record.end_s), (*log.writes, log.done), strict=True):
            assert got - wrote < TRANSIT
        assert record.ttft_s >= 0.050 and record.ttfat_s >= 0.100 and record.e2e_s >= 0.120


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
