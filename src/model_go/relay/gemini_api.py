"""The Gemini API's routes on the relay: one entry point for every path under /v1beta/models and
/v1/models/, which reads the model and the method from the path (`models/m:generateContent`) and
hands generateContent and streamGenerateContent to the pipeline with a GeminiGenerate dialect.
countTokens (model-go's own estimate, free) and the model list are answered here."""

from __future__ import annotations

import logging
from typing import Protocol

import orjson

from model_go.billing.pricing import Price
from model_go.dialects import Dialect, gemini
from model_go.errors import GatewayError, MethodNotAllowed, NotFound
from model_go.providers.base import Channel
from model_go.relay.asgi import Receive, Scope, Send, header, read_body, send_error, send_json
from model_go.relay.snapshot import KeyInfo
from model_go.settings import Settings
from model_go.state import AppState


class Relay(Protocol):
    """What these routes use of the pipeline's Relay (relay/pipeline.py)."""

    settings: Settings
    state: AppState

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, dialect: Dialect | None = None
    ) -> None: ...

    async def _send_error(
        self, send: Send, exc: GatewayError, dialect: Dialect | None, extra: list[tuple[bytes, bytes]]
    ) -> None: ...

    async def _authenticate(self, scope: Scope) -> KeyInfo: ...

    def _resolve(self, key: KeyInfo, model: str) -> tuple[list[Channel], Price]: ...


log = logging.getLogger("model_go.relay")
# answers this module's own errors in Google's shape
ERRORS = gemini.GeminiGenerate("", streaming=False, sse=False)


def google_key(scope: Scope) -> str | None:
    """The key sent Google's way: the x-goog-api-key header, or `?key=` on a Gemini path."""
    value = header(scope, b"x-goog-api-key")
    if value is None and scope.get("query_string") and scope["path"].startswith(gemini.PREFIXES):
        value = gemini.query_key(scope["query_string"])
    return value


def google_way(scope: Scope) -> bool:
    """True when the request authenticates as a Gemini client does (and not with a Bearer token)."""
    return header(scope, b"authorization") is None and google_key(scope) is not None


def _not_allowed(scope: Scope, allowed: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"Method {scope['method']} is not allowed here.", headers={"Allow": allowed})


async def serve(relay: Relay, scope: Scope, receive: Receive, send: Send) -> None:
    """Every Gemini path: the generation methods go through the pipeline, the rest is answered here."""
    where = gemini.target(scope["path"])
    query = scope.get("query_string", b"")
    if where is not None and where.method in (gemini.GENERATE, gemini.STREAM) and scope["method"] == "POST":
        assert where.model is not None
        channels = relay.state.snapshot.routes.get(where.model) or ()
        native = bool(channels) and all(c.provider == gemini.PROVIDER for c in channels)
        dialect = gemini.GeminiGenerate(
            where.model, where.method == gemini.STREAM, gemini.wants_sse(query), native=native
        )
        await relay._guard(scope, receive, send, dialect.endpoint, dialect)
        return
    if where is not None and where.version == "v1" and where.method is None and not google_way(scope):
        # /v1/models/{id} is OpenAI's path too: a Bearer client gets OpenAI's 404, as before
        await send_error(send, NotFound("Unknown path."))
        return
    try:
        await _answer(relay, scope, receive, send, where)
    except GatewayError as exc:
        await relay._send_error(send, exc, ERRORS, [])
    except ConnectionResetError:
        pass
    except Exception:
        log.exception("unexpected error in a Gemini API request")  # no request data in it
        await relay._send_error(send, GatewayError(), ERRORS, [])


async def _answer(
    relay: Relay, scope: Scope, receive: Receive, send: Send, where: gemini.Target | None
) -> None:
    if where is None or (where.method is not None and where.method not in gemini.METHODS):
        raise NotFound("Unknown path.")
    if where.method is None:
        if scope["method"] != "GET":
            raise _not_allowed(scope, "GET")
        await _models(relay, scope, send, where.model)
        return
    if scope["method"] != "POST":
        raise _not_allowed(scope, "POST")
    assert where.model is not None
    key = await relay._authenticate(scope)
    raw = await read_body(scope, receive, relay.settings.max_body_bytes)
    tokens = gemini.count_tokens(raw, where.model)
    relay._resolve(key, where.model)
    await send_json(send, 200, orjson.dumps({"totalTokens": tokens}))


async def _models(relay: Relay, scope: Scope, send: Send, model: str | None) -> None:
    """The list, or one model, in Gemini's shape."""
    key = await relay._authenticate(scope)
    snapshot = relay.state.snapshot
    if model is not None:
        if model not in snapshot.models_for(key):
            raise NotFound(f"The model '{model}' does not exist or is not available.", param="model")
        models = [model]
    else:
        models = snapshot.models_for(key)
    listed = [gemini.model_json(m, *_limits(relay, m)) for m in models]
    body = listed[0] if model is not None else {"models": listed}
    await send_json(send, 200, orjson.dumps(body))


def _limits(relay: Relay, model: str) -> tuple[int, int]:
    spec = relay.state.snapshot.prices[model].spec
    return spec.context_length, spec.max_output_tokens
