"""The OpenAPI document agrees with the server: Schemathesis generates requests from
/openapi.json (valid and invalid ones) and checks every answer against the document: its
statuses, content types, bodies and headers, and that nothing is a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serve.api.api_settings import ApiSettings
from serve.api.ingress import build_openai_app
from tests.serve.api.engine_clients import OneTokenClient

SERVED = "deepseek-r1-tiny"
# Limits no JSON schema can state, each a 400 with its own code: the prompt and max_tokens
# within the context, and n times the prompts within MAX_N choices.
CROSS_FIELD_CODES = {"context_length_exceeded", "too_many_choices"}


def accepts_valid_data(ctx, response, case):
    """Schemathesis's check that a request valid by the document is accepted, but for the
    cross-field limits above."""
    if response.status_code == 400 and response.json()["error"]["code"] in CROSS_FIELD_CODES:
        return None
    return positive_data_acceptance(ctx, response, case)


@pytest.fixture(scope="module")
def app(tiny_fp32_dir):
    from serve.engine.reference.tokenizer import Tokenizer

    settings_ = ApiSettings(served_model_name=SERVED, context_length=4096, max_tokens_cap=64)
    return build_openai_app(OneTokenClient(), Tokenizer.from_dir(tiny_fp32_dir), settings_)


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)



@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/models",
                                  "/v1/models/{model}", "/health", "/metrics"])
def test_the_server_does_what_its_document_says(api_schema, path):
    # Schemathesis's own pytest plugin does not load under this pytest; the same run by hand.
    found = [op.ok() for op in api_schema.get_all_operations() if op.ok().path == path]
    assert found, f"{path} is not in /openapi.json"
    for operation in found:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance],
                                   additional_checks=[accepts_valid_data])

        check()


def test_the_document_lists_what_the_server_sends(app):
    doc = app.openapi()
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= set(chat)
    assert "422" not in chat and "text/event-stream" in chat["200"]["content"]
    assert "ValidationError" not in doc["components"]["schemas"]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    model = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]
    assert model["enum"] == [SERVED]


def test_the_interactive_pages_are_off_unless_asked_for(app, tiny_fp32_dir):
    from fastapi.testclient import TestClient

    from serve.engine.reference.tokenizer import Tokenizer

    assert TestClient(app).get("/docs").status_code == 404
    assert TestClient(app).get("/redoc").status_code == 404
    assert TestClient(app).get("/openapi.json").status_code == 200
    on = build_openai_app(OneTokenClient(), Tokenizer.from_dir(tiny_fp32_dir), ApiSettings(
        served_model_name=SERVED, context_length=4096, max_tokens_cap=64, docs=True))
    assert TestClient(on).get("/docs").status_code == 200
