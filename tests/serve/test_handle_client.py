"""`HandleEngineClient`'s engine requests each carry their own Serve internal request id."""

from __future__ import annotations

from ray.serve import context as serve_context
from ray.serve._private.default_impl import (
    create_dynamic_handle_options,
    create_init_handle_options,
    get_request_metadata,
)

from serve.handle_client import own_internal_request_id


def metadata():
    """The metadata Serve gives a handle call made here (what `handle.remote()` reads)."""
    return get_request_metadata(create_init_handle_options(),
                                create_dynamic_handle_options(method_name="generate"))


def test_each_engine_request_has_its_own_internal_id_under_one_http_request():
    serve_context._serve_request_context.set(serve_context._RequestContext(
        request_id="http-1", _internal_request_id="proxy-1", app_name="app"))
    try:
        assert metadata().internal_request_id == "proxy-1"  # what every call inherits
        with own_internal_request_id("cmpl-x-c000"):
            first = metadata()
        with own_internal_request_id("cmpl-x-c001"):
            second = metadata()
        assert (first.internal_request_id, second.internal_request_id) == ("cmpl-x-c000",
                                                                           "cmpl-x-c001")
        # the HTTP request's id (logs, tracing) and app stay those of the request served
        assert first.request_id == second.request_id == "http-1"
        assert first.app_name == "app"
        assert metadata().internal_request_id == "proxy-1"  # restored
    finally:
        serve_context._unset_request_context()
