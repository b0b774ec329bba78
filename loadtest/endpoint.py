"""Where and how to send requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server and the fixed parts of every request to it."""

    base_url: str
    model: str
    api_key: str | None = None
    #: Merged into every request body, e.g. {"ignore_eos": true, "temperature": 0.6}.
    extra_body: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    request_timeout_s: float = 3600.0
    #: Where the server's Prometheus metrics are; None means `<base_url>/metrics`.
    metrics_url: str | None = None

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    @property
    def models_url(self) -> str:
        return f"{self.base_url}/v1/models"

    @property
    def prometheus_url(self) -> str:
        return self.metrics_url or f"{self.base_url}/metrics"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def normalize_base_url(url: str) -> str:
    """Accept `http://host:port`, `.../v1` or `.../v1/chat/completions`; return the root."""
    url = url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models", "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url.rstrip("/")
