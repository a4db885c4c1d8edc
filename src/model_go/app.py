"""create_app(settings): the ASGI application. Relay routes are plain Starlette routes that read
raw bytes; the management and health routes use FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from model_go import __version__
from model_go import state as app_state
from model_go.errors import GatewayError, InvalidRequest, error_for_status
from model_go.relay.asgi import Receive, Scope, Send
from model_go.relay.pipeline import Relay
from model_go.settings import Settings


class Endpoint:
    """Wraps a relay coroutine so Starlette treats it as a raw ASGI app (no Request object)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class RelayFront:
    """Pure ASGI front door: a /v1 request whose path and method match a relay endpoint goes straight
    to it (a dict lookup), skipping the framework's middleware and route scan; everything else, and
    every mismatch (so 404/405 stay OpenAI-shaped), goes to the FastAPI app."""

    def __init__(self, app: FastAPI, relay: Relay) -> None:
        self.app = app
        self.fast: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): relay.chat_completions,
            ("POST", "/v1/embeddings"): relay.embeddings,
            ("GET", "/v1/models"): relay.models,
            ("POST", "/v1/messages"): relay.messages,
            ("POST", "/v1/messages/count_tokens"): relay.messages_count_tokens,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.fast.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_server_app(settings: Settings) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """What `model-go serve` runs: the FastAPI app behind the relay's fast path, behind the server-wide
    request limits (which leave /v1 to the relay's own body limit)."""
    from model_go.guard import RequestGuard

    app = create_app(settings)
    return RequestGuard(RelayFront(app, app.state.relay), max_body_bytes=settings.api_max_body_bytes)


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await app_state.start(settings)
        app.state.model_go = state
        relay.state = state
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
    relay = Relay()
    app.state.relay = relay
    app.router.routes.append(
        Route("/v1/chat/completions", Endpoint(relay.chat_completions), methods=["POST"])
    )
    app.router.routes.append(Route("/v1/embeddings", Endpoint(relay.embeddings), methods=["POST"]))
    app.router.routes.append(Route("/v1/models", Endpoint(relay.models), methods=["GET"]))
    # Anthropic's Messages API: every method reaches the handler, which answers a wrong one with a
    # 405 in Anthropic's error shape
    app.router.routes.append(Route("/v1/messages", Endpoint(relay.messages)))
    app.router.routes.append(Route("/v1/messages/count_tokens", Endpoint(relay.messages_count_tokens)))

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

    # --- web dashboard (owned by the dashboard: src/model_go/web): page routes and /static ---
    from model_go.web import mount_dashboard

    mount_dashboard(app)
    # --- end web dashboard ---

    # -- management API under /api (issue 4): routers and their error handling -----------------
    from model_go import api

    api.install(app)
    # -- end of the /api block ----------------------------------------------------------------

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
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "config_version": state.snapshot.version})

    return app
