"""`HeaderTimeoutProtocol`: the Serve HTTP proxy closes a connection whose request head (request
line and headers) does not arrive in time.

Ray Serve 2.60's proxy runs uvicorn with `http="auto"` (httptools when installed, else h11) and
exposes one timer, `keep_alive_timeout_s`. uvicorn arms it only after a response completes and
cancels it on the next bytes, so a connection that never sends a byte, or sends part of a head and
stalls, is held forever: uvicorn has no header timeout. Serve builds `uvicorn.Config` itself, so
no protocol class can be passed in; what it offers is a callback it calls in each proxy process
before the server starts (`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`). `proxy_callback` uses it
to point uvicorn's "auto" protocol at `HeaderTimeoutProtocol`.

The deadline runs from the connection's start, and on a kept-alive connection from the first byte
of the next head; idle time between requests stays the keep-alive timer's business.
"""

from __future__ import annotations

import asyncio

import uvicorn.config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"  # read by Serve in the proxy
TIMEOUT_ENV = "R1SERVE_HTTP_HEADER_TIMEOUT_S"  # read by `Settings` in the proxy
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                     b"connection: close\r\n\r\n")


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP/1.1 protocol, with a deadline on each request head."""

    header_timeout_s: float = 20.0  # set by `install`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a whole head arrived: the app has the request
            self._disarm()
            self._head_started = False
        elif self._awaiting_head():
            self._head_started = True
            if self._head_timer is None:
                self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self._head_started:  # a client mid-request learns why; a silent one just goes
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def install(timeout_s: float) -> None:
    """Make uvicorn servers started after this call in this process use `HeaderTimeoutProtocol`;
    a timeout of 0 leaves uvicorn as it is."""
    if timeout_s <= 0:
        return
    HeaderTimeoutProtocol.header_timeout_s = timeout_s
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{HeaderTimeoutProtocol.__name__}"


def proxy_callback() -> list:
    """Serve's proxy callback: installs the timeout from the environment; adds no middleware."""
    from serve.settings import Settings

    install(Settings.from_env().http_header_timeout_s)
    return []


def proxy_env(timeout_s: float) -> dict[str, str]:
    """The environment that makes Serve's proxies call `proxy_callback` with this timeout."""
    return {CALLBACK_ENV: f"{__name__}:{proxy_callback.__name__}", TIMEOUT_ENV: str(timeout_s)}
