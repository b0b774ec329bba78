"""`ApiSettings`: what the HTTP layer enforces, independent of any engine, built from the
user's config by `from_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from serve.errors import ConfigError

if TYPE_CHECKING:
    from serve.config import R1ServeConfig


@dataclass(frozen=True)
class ApiSettings:
    """What the HTTP layer enforces, independent of any engine."""

    served_model_name: str  # the only accepted `model`
    context_length: int  # prompt + output tokens, as the engines allow
    max_tokens_cap: int  # most output tokens per choice; also the default max_tokens
    default_temperature: float = 0.6  # R1 model card's recommendation
    default_top_p: float = 0.95  # R1 model card's recommendation
    api_keys: frozenset[str] = field(default_factory=frozenset)  # empty: no authentication
    max_in_flight: int = 256  # admitted requests; beyond it 429 with Retry-After
    request_timeout_s: float | None = 3600.0  # whole request, first byte to last token
    max_body_bytes: int | None = None  # None: `default_body_limit(context_length)`
    docs: bool = False  # serve /docs and /redoc (their scripts come from a CDN)

    def __post_init__(self) -> None:
        if not self.served_model_name:
            raise ConfigError("api served_model_name must not be empty")
        for name in ("context_length", "max_tokens_cap", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ConfigError(f"api {name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.default_temperature <= 2.0:
            raise ConfigError(f"api default_temperature={self.default_temperature} must be in "
                              "[0, 2]")
        if not 0.0 < self.default_top_p <= 1.0:
            raise ConfigError(f"api default_top_p={self.default_top_p} must be in (0, 1]")
        if self.request_timeout_s is not None and self.request_timeout_s <= 0:
            raise ConfigError(f"api request_timeout_s={self.request_timeout_s} must be positive "
                              "(or null for no timeout)")
        if any(not k for k in self.api_keys):
            raise ConfigError("api api_keys must not contain an empty key")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise ConfigError(f"api max_body_bytes={self.max_body_bytes} must be at least 1024")

    @classmethod
    def from_config(cls, config: R1ServeConfig) -> ApiSettings:
        a = config.api
        return cls(
            served_model_name=config.model.served_name,
            context_length=config.model.context_length, max_tokens_cap=a.max_tokens_cap,
            default_temperature=a.default_temperature, default_top_p=a.default_top_p,
            api_keys=a.api_keys(), max_in_flight=a.max_in_flight,
            request_timeout_s=a.request_timeout_s, max_body_bytes=a.max_body_bytes,
            docs=a.docs)

    @property
    def body_limit(self) -> int:
        """Most bytes of a request body; larger ones get 413 before they are parsed."""
        return self.max_body_bytes or default_body_limit(self.context_length)


def default_body_limit(context_length: int) -> int:
    """128 bytes per token of context, at least 1 MiB: room for a full context of JSON-escaped
    text or token ids, plus earlier turns' reasoning that clients echo back and the chat
    template drops (32K tokens: 4 MiB)."""
    return max(1 << 20, 128 * context_length)
