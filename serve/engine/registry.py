"""Backends by name. Each is imported only when chosen, so GPU-only packages stay out of
processes that do not use them."""

from __future__ import annotations

import importlib

from serve.config import R1ServeConfig
from serve.engine.backend import Backend

# name -> "module:class" of its `Backend`
_BACKENDS = {
    "reference": "serve.engine.reference.backend:ReferenceBackend",
    "sglang": "serve.engine.sglang.backend:SGLangBackend",
}


def backend_of(config: R1ServeConfig) -> Backend:
    """The configured backend (`model.backend`)."""
    module, _, name = _BACKENDS[config.model.backend].partition(":")
    return getattr(importlib.import_module(module), name)()
