"""create_app(settings): the ASGI application. Relay routes are plain Starlette routes that read
raw bytes; the management and health routes use FastAPI."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from model_go import __version__
from model_go import state as app_state
from model_go.errors import AuthenticationFailed, GatewayError, InvalidRequest, error_for_status
from model_go.observability.request_ids import with_request_id
from model_go.relay.asgi import Receive, Scope, Send
from model_go.relay.pipeline import Relay
from model_go.settings import Settings


@dataclass(frozen=True)
class RelayRoute:
    path: str
    handler: str  # the Relay method that serves it
    methods: tuple[str, ...]  # what the fast front door takes
    # the Starlette route takes every method and the handler answers a wrong one itself (the
    # Messages API's 405 comes in Anthropic's error shape)
    any_method: bool = False


# The relay's routes, once: the fast front door and the Starlette routes (for 404/405) both read it.
RELAY_ROUTES = (
    RelayRoute("/v1/chat/completions", "chat_completions", ("POST",)),
    RelayRoute("/v1/embeddings", "embeddings", ("POST",)),
    RelayRoute("/v1/models", "models", ("GET",)),
    RelayRoute("/v1/messages", "messages", ("POST",), any_method=True),
    RelayRoute("/v1/messages/count_tokens", "messages_count_tokens", ("POST",), any_method=True),
    RelayRoute("/v1/responses", "responses", ("POST",)),
    # model-go stores no responses: reading, deleting or cancelling one is refused with the reason
    RelayRoute("/v1/responses/{response_id:path}", "stored_response", (), any_method=True),
)
FAST_ROUTES = {(method, r.path): r.handler for r in RELAY_ROUTES for method in r.methods}
# The Gemini API names its model and method in the path (`/v1beta/models/m:generateContent`): every
# path under these prefixes goes to one handler, which reads them (relay/gemini_api.py).
GEMINI_PREFIXES = ("/v1beta/", "/v1/models/")
GEMINI_HANDLER = "gemini"


def _relay(app: Any) -> Relay:
    """The running server's Relay, built by the lifespan."""
    relay: Relay = app.state.relay
    return relay


class Endpoint:
    """A relay route as a raw ASGI app for Starlette (no Request object)."""

    def __init__(self, handler: str) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await getattr(_relay(scope["app"]), self.handler)(scope, receive, send)


class RelayFront:
    """Pure ASGI front door: a /v1 request whose path and method match a relay route goes straight
    to it (a dict lookup; a Gemini path: a prefix test after it), skipping the framework's middleware
    and route scan; everything else, and every mismatch (so 404/405 stay OpenAI-shaped), goes to the
    FastAPI app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = FAST_ROUTES.get((scope["method"], scope["path"]))
            if handler is None and scope["path"].startswith(GEMINI_PREFIXES):
                handler = GEMINI_HANDLER
            if handler is not None:
                await getattr(_relay(self.app), handler)(scope, receive, send)
                return
            if scope["path"].startswith("/v1/"):
                send = with_request_id(send)  # (the RequestGuard gave every other path one)
        await self.app(scope, receive, send)


def create_server_app(settings: Settings) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """What `model-go serve` runs: the FastAPI app behind the relay's fast path, behind the server-wide
    request limits (which leave /v1 to the relay's own body limit)."""
    from model_go.guard import RequestGuard

    return RequestGuard(RelayFront(create_app(settings)), max_body_bytes=settings.api_max_body_bytes)


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await app_state.start(settings)
        app.state.model_go = state
        app.state.relay = Relay(state)
        try:
            yield
        finally:
            await app_state.stop(state)

    app = FastAPI(
        title="model-go",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI would load scripts from a CDN; /openapi.json is the contract
        redoc_url=None,
    )
    for route in RELAY_ROUTES:
        methods = None if route.any_method else list(route.methods)
        app.router.routes.append(Route(route.path, Endpoint(route.handler), methods=methods))
    for prefix in GEMINI_PREFIXES:
        app.router.routes.append(Route(prefix + "{rest:path}", Endpoint(GEMINI_HANDLER)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path
        wants_page = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and wants_page and not path.startswith(("/v1/", "/api/", "/static/")):
            from model_go.web.pages import not_found_page

            return not_found_page()
        messages = {404: "Unknown path.", 405: f"Method {request.method} is not allowed here."}
        message = messages.get(exc.status_code) or str(exc.detail)
        return _error_response(error_for_status(exc.status_code, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _error_response(
            InvalidRequest(f"Invalid request: {first.get('msg', 'bad input')}.", param=param)
        )

    # the dashboard's pages and /static, then the management API under /api with its error handling
    from model_go.web import mount_dashboard

    mount_dashboard(app)
    from model_go import api

    api.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics, to the bearer of MODELGO_METRICS_TOKEN; unknown without one."""
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        if not token:
            return _error_response(error_for_status(404, "Unknown path."))
        supplied = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(supplied, b"Bearer " + token.encode()):
            return _error_response(
                AuthenticationFailed(
                    "The metrics need the metrics token.", headers={"WWW-Authenticate": "Bearer"}
                )
            )
        state: app_state.AppState = request.app.state.model_go
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        state: app_state.AppState | None = getattr(request.app.state, "model_go", None)
        if state is None or not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with state.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            # still ready: /v1 serves the keys, prices and balances it holds and keeps usage in
            # memory until the database is back; taking every replica out would stop that too
            body = {"status": "degraded", "database": "unreachable", "config_version": state.snapshot.version}
            return JSONResponse(body)
        return JSONResponse({"status": "ready", "config_version": state.snapshot.version})

    return app
