"""Fixtures for the load-test tests: a scripted OpenAI-compatible server on 127.0.0.1.

The server (`fake_openai_server.py`) runs as its own process; `FakeServer` starts it, waits for
it, and reads back what it saw. See that file for what it streams and records.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SERVER = Path(__file__).with_name("fake_openai_server.py")


@dataclass
class ServerLog:
    """One request as the server saw it (perf_counter seconds)."""

    received: float
    body: dict[str, Any]
    writes: list[float] = field(default_factory=list)
    done: float | None = None


class FakeServer:
    """`events`: a fixed list of (offset_s, "reasoning" | "answer", text) for every request, or
    None for max_tokens chunks one millisecond apart. `usage`: "full", "plain" or "none"."""

    def __init__(self, events: list[tuple[float, str, str]] | None = None, usage: str = "full",
                 api_key: str | None = None, models: tuple[str, ...] = ("r1",)) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"events": events, "usage": usage, "api_key": api_key, "models": list(models)}
        self._proc = subprocess.Popen([sys.executable, str(SERVER), str(self.port),
                                       json.dumps(config)])
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self._proc.poll() is not None:
                    raise RuntimeError("the fake server exited") from None
                time.sleep(0.05)
        raise RuntimeError("the fake server did not start")

    def _state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_state", timeout=10) as resp:
            return json.loads(resp.read())

    @property
    def logs(self) -> list[ServerLog]:
        return [ServerLog(**log) for log in self._state()["logs"]]

    @property
    def max_in_flight(self) -> int:
        return int(self._state()["max_in_flight"])

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """A factory: `fake_server(events=..., usage=..., api_key=...)` starts a server that is
    stopped at the end of the test."""
    started: list[FakeServer] = []

    def make(**kwargs: Any) -> FakeServer:
        started.append(FakeServer(**kwargs))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on."""
    return _free_port()
