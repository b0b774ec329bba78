"""Fixtures for the HTTP layer: the tiny checkpoint's tokenizer, and live servers running an
app under uvicorn on 127.0.0.1 in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import openai
import pytest
import uvicorn
from fastapi import FastAPI

from serve.engine.reference.tokenizer import Tokenizer

SERVED = "deepseek-r1-tiny"


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_fp32_dir) -> Tokenizer:
    return Tokenizer.from_dir(tiny_fp32_dir)


class LiveServer:
    """One app served by uvicorn in a daemon thread; `stop()` shuts it down."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        """The official client, without retries so that error statuses surface as they are."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0,
                             timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve_app() -> Iterator[Callable[[FastAPI], LiveServer]]:
    """Start apps under uvicorn; every one is stopped when the test ends."""
    servers: list[LiveServer] = []

    def start(app: FastAPI) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """Poll `condition()` until it holds or `timeout` seconds pass; return whether it held."""
    return _wait_until
