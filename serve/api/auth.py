"""API keys: `Authorization: Bearer <key>` must match a configured key; no keys, no auth."""

from __future__ import annotations

import hmac

from serve.errors import R1ServeError


class AuthenticationError(R1ServeError):
    """The request carries no API key, or one that is not configured (HTTP 401)."""

    status_code = 401
    code = "invalid_api_key"


class ApiKeyAuth:
    """Checks bearer tokens against a fixed set of keys in constant time."""

    def __init__(self, api_keys: frozenset[str]) -> None:
        self._keys = tuple(k.encode() for k in api_keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise `AuthenticationError` unless the header holds a configured key (or no keys
        are configured)."""
        if not self._keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(
                "missing API key: send it as 'Authorization: Bearer <key>'")
        given = token.strip().encode()
        # Compare with every key, without stopping at a match, so that timing reveals
        # neither the key nor which of the keys matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise AuthenticationError("incorrect API key provided")
