"""The OpenAI-compatible HTTP app, independent of Ray: `build_openai_app(client, tokenizer,
settings)` gives a FastAPI app that reaches engines only through an `EngineClient`.

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models[/{id}]`, and,
without API-key checks (for load balancers and Prometheus), `GET /health` and `GET /metrics`.
A request is checked in this order, cheapest first: API key (401), body size (413), body schema
(400), model name (404), unsupported parameters and limits (400), admission (429); then it
reaches an engine, which may still refuse it (400, 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.admission import Admission
from serve.api.api_settings import ApiSettings
from serve.api.auth import ApiKeyAuth, AuthenticationError
from serve.api.body_limit import BodyLimit
from serve.api.chat import plan_chat
from serve.api.completions import plan_completion
from serve.api.dispatcher import Dispatcher
from serve.api.engine_client import EngineClient
from serve.api.http_errors import ModelNotFoundError, error_response, install_error_handlers
from serve.api.metrics import ApiMetrics
from serve.api.openapi import (
    METRICS_RESPONSES,
    completion_responses,
    errors,
    install_openapi,
)
from serve.api.protocol import ChatCompletionRequest, CompletionRequest
from serve.api.request_id import REQUEST_ID_HEADER, assign_request_id, request_id_of
from serve.api.responses import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from serve.api.tokenizer_protocol import ApiTokenizer
from serve.errors import EngineDeadError, R1ServeError

log = logging.getLogger(__name__)

# Requests of one conversation carry the same id here, so the router keeps them on the
# replica that caches their history (unless it is overloaded).
SESSION_HEADER = "x-session-id"


def build_openai_app(client: EngineClient, tokenizer: ApiTokenizer, settings: ApiSettings,
                     extra_registries: Sequence[CollectorRegistry] = ()) -> FastAPI:
    """The OpenAI-compatible app for one served model. `app.state.metrics` holds its metrics
    and `app.state.admission` its in-flight count."""
    # /docs and /redoc load their scripts from a CDN and need no key: off unless asked for.
    app = FastAPI(title="r1serve", summary="OpenAI-compatible API for DeepSeek-R1",
                  docs_url="/docs" if settings.docs else None,
                  redoc_url="/redoc" if settings.docs else None)
    install_openapi(app, settings.served_model_name, settings.max_tokens_cap,
                    tokenizer.vocab_size)
    metrics = ApiMetrics(extra_registries)
    admission = Admission(settings.max_in_flight)
    dispatcher = Dispatcher(client, admission, metrics, settings.request_timeout_s)
    app.state.metrics, app.state.admission = metrics, admission
    install_error_handlers(app)
    # The last added runs first: API key, then the body's size, then the routes.
    app.add_middleware(BodyLimit, max_bytes=settings.body_limit)
    app.add_middleware(_Gate, auth=ApiKeyAuth(settings.api_keys), metrics=metrics)
    created = int(time.time())
    card = ModelCard(id=settings.served_model_name, created=created)

    def check_model(model: str) -> None:
        if model != settings.served_model_name:
            raise ModelNotFoundError(
                f"the model '{model}' does not exist; this server serves "
                f"'{settings.served_model_name}'", param="model")

    v1 = APIRouter(prefix="/v1")

    @v1.post("/chat/completions", response_model=None,
             responses=completion_responses(ChatCompletionResponse, ChatCompletionChunk))
    async def chat_completions(body: ChatCompletionRequest, http: Request) -> Response:
        check_model(body.model)
        # Rendering and tokenizing take time in proportion to the prompt: off the event loop,
        # which serves every other request meanwhile.
        requests, renderer = await asyncio.to_thread(plan_chat, body, tokenizer, settings,
                                                     http.headers.get(SESSION_HEADER))
        return await dispatcher.respond(http, "chat", requests, renderer, body.stream)

    @v1.post("/completions", response_model=None,
             responses=completion_responses(CompletionResponse, CompletionChunk))
    async def completions(body: CompletionRequest, http: Request) -> Response:
        check_model(body.model)
        requests, renderer = await asyncio.to_thread(plan_completion, body, tokenizer,
                                                     settings, http.headers.get(SESSION_HEADER))
        return await dispatcher.respond(http, "completions", requests, renderer, body.stream)

    @v1.get("/models", responses=errors(401))
    async def list_models() -> ModelList:
        return ModelList(data=[card])

    @v1.get("/models/{model:path}", responses=errors(401, 404))
    async def get_model(model: str) -> ModelCard:
        check_model(model)
        return card

    app.include_router(v1)

    @app.get("/health", responses=errors(503))
    async def health() -> dict[str, str]:
        try:
            await client.health()
        except EngineDeadError:
            raise
        except Exception as e:  # a failed check means "cannot serve", never a 500
            raise EngineDeadError(f"engine health check failed: {e!r}") from e
        return {"status": "ok"}

    @app.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        return Response(await metrics.render(client), media_type=CONTENT_TYPE_LATEST)

    return app


_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


def _endpoint(path: str) -> str:
    """A bounded label for a path, whatever clients send."""
    return _ENDPOINTS.get(path, "models" if path.startswith("/v1/models") else "other")


class _Gate:
    """ASGI middleware in front of every route: gives each request its id, checks API keys on
    `/v1` before anything else (even before the body is read), answers a bug with a bare 500
    (logged with its traceback under the request id), and counts `/v1` requests that never
    reached the dispatcher (rejected early), which counts its own."""

    def __init__(self, app: ASGIApp, auth: ApiKeyAuth, metrics: ApiMetrics) -> None:
        self.app, self.auth, self.metrics = app, auth, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if assign_request_id(scope):
            send = _with_request_id(send, request_id_of(scope) or "")
        path = scope.get("path", "")
        counted = path.startswith("/v1")
        endpoint = _endpoint(path)
        if counted:
            header = dict(scope.get("headers", ())).get(b"authorization")
            try:
                self.auth.check(None if header is None else header.decode("latin-1"))
            except AuthenticationError as e:
                self.metrics.requests.labels(endpoint, str(e.status_code)).inc()
                await error_response(e, request_id_of(scope))(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        status: int | None = None  # until a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as e:
            if status is not None:  # the response is under way: nothing else can be sent
                raise
            request_id = request_id_of(scope)
            log.error("request %s: unhandled error serving %s %s", request_id,
                      scope.get("method"), path, exc_info=e)
            status = 500
            await error_response(R1ServeError("unhandled error"), request_id)(
                scope, receive, send)
        finally:
            if counted and not state.get("observed"):
                self.metrics.requests.labels(endpoint, str(status or 500)).inc()


def _with_request_id(send: Send, request_id: str) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()),
                                              (REQUEST_ID_HEADER, request_id.encode())]}
        await send(message)

    return send_with_id
