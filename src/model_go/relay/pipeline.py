"""The hot path. One client request, end to end:

    parse → authenticate → resolve model → limits → reserve → route → forward → stream out
          → meter → settle exactly once (in `finally`) → enqueue the usage row

Nothing here touches the database: keys, channels and prices come from the in-memory snapshot,
money from the in-process ledger, and the usage row is written later by the batched writer.
Prompt and response text never reach a log line, an error message or a stored row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from model_go.billing.ledger import Reservation
from model_go.billing.money import request_cost
from model_go.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from model_go.providers import REGISTRY
from model_go.providers.base import Call, Channel, Provider, StreamTranslator, Usage
from model_go.relay import forward
from model_go.relay.asgi import (
    Receive,
    Scope,
    Send,
    encode_headers,
    header,
    read_body,
    send_error,
    send_json,
)
from model_go.relay.routing import candidates
from model_go.relay.snapshot import KeyInfo, Price
from model_go.tokens import estimate_prompt_tokens, prompt_token_bound, text_tokens
from model_go.usage.writer import UsageRecord
from model_go.wire import openai as wire
from model_go.wire.sse import DONE, KEEPALIVE, SSEDecoder, frame

if TYPE_CHECKING:
    from model_go.state import AppState

log = logging.getLogger("model_go.relay")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
CLIENT_CLOSED = 499


@dataclass
class Outcome:
    """What happened to one request; turned into exactly one usage row and at most one debit."""

    status: int = 200
    error_code: str | None = None
    usage: Usage | None = None
    completion_chars: int = 0
    delivered: bool = False  # some generated output reached (or was produced for) the client
    channel_id: int | None = None
    attempts: int = 0
    ttft_ms: int | None = None


@dataclass
class Context:
    request_id: str
    started: float
    endpoint: str
    key: KeyInfo
    model: str
    price: Price
    body: dict[str, Any]
    stream: bool
    client_ip: str | None
    user_agent: str | None
    outcome: Outcome = field(default_factory=Outcome)


# Request ids: a random per-process prefix and a counter. Unique across replicas without a syscall per
# request (secrets.token_hex reads os.urandom every time).
_ID_PREFIX = "req_" + secrets.token_hex(6)
_id_counter = itertools.count(1)


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


class Relay:
    """The /v1 endpoints. Built once per app; the lifespan hands it the live AppState."""

    state: AppState

    # -- entry points -----------------------------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send, "chat")

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send, "embeddings")

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            key = self._authenticate(scope)
            snap = self.state.snapshot
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "model-go"}
                for m in snap.models_for(key)
            ]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))
        except GatewayError as exc:
            await send_error(send, exc)

    async def _guard(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        request_id = _request_id()
        extra = [(b"x-request-id", request_id.encode())]
        started = time.perf_counter()
        status = 500
        try:
            status = await self._handle(scope, receive, send, endpoint, request_id, started)
        except GatewayError as exc:
            status = exc.status
            await send_error(send, exc, extra)
        except ConnectionResetError:
            status = CLIENT_CLOSED
        except Exception:
            # the traceback carries no request data: bodies live only in local variables
            log.exception("unexpected error in %s request %s", endpoint, request_id)
            await send_error(send, GatewayError(), extra)
        finally:
            if self.state.settings.access_log:
                log.info(
                    "%s %s %d %.1fms",
                    request_id,
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )

    # -- the pipeline -----------------------------------------------------------------------

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: str,
        request_id: str,
        started: float,
    ) -> int:
        settings = self.state.settings
        key = self._authenticate(scope)
        raw = await read_body(scope, receive, settings.max_body_bytes)
        body = wire.parse_json_object(raw)
        if endpoint == "chat":
            model, stream, wants_usage, max_out, n = wire.validate_chat(body)
        else:
            model, stream, wants_usage, max_out, n = (
                wire.validate_embeddings(body),
                False,
                False,
                0,
                1,
            )
        channels, price = self._resolve(key, model)
        ctx = Context(
            request_id=request_id,
            started=started,
            endpoint=endpoint,
            key=key,
            model=model,
            price=price,
            body=body,
            stream=stream,
            client_ip=scope["client"][0] if scope.get("client") else None,
            user_agent=header(scope, b"user-agent"),
        )
        limit_headers = self._check_limits(key)
        concurrency = settings.default_concurrency
        if concurrency:
            self.state.limiter.acquire(key.user_id, concurrency)
        try:
            worst_out = (max_out or settings.default_max_output_tokens) * n if endpoint == "chat" else 0
            reserve = request_cost(
                prompt_tokens=prompt_token_bound(raw),
                completion_tokens=worst_out,
                cached_tokens=0,
                input_per_1m=price.input_per_1m,
                output_per_1m=price.output_per_1m,
                cached_input_per_1m=price.cached_input_per_1m,
            )
            res = self.state.ledger.reserve(key.user_id, reserve, request_id)
            call = Call(
                body=body,
                raw=raw,
                model=model,
                upstream_model=model,
                stream=stream,
                client_wants_usage=wants_usage,
            )
            extra = [(b"x-request-id", request_id.encode()), *encode_headers(limit_headers)]
            try:
                await self._attempt_all(ctx, call, channels, receive, send, extra)
            except asyncio.CancelledError:
                if not self._client_gone(ctx):
                    ctx.outcome.status, ctx.outcome.error_code = 503, "server_shutdown"
                    raise
            except GatewayError as exc:
                ctx.outcome.status, ctx.outcome.error_code = exc.status, exc.code
                raise
            finally:
                self._settle(ctx, res)
        finally:
            if concurrency:
                self.state.limiter.release(key.user_id)
        return ctx.outcome.status

    def _authenticate(self, scope: Scope) -> KeyInfo:
        auth = header(scope, b"authorization")
        raw_key = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else header(scope, b"x-api-key")
        if not raw_key:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        snap = self.state.snapshot
        key = snap.keys.get(self.state.keyring.hash_api_key(raw_key))
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        user = snap.users.get(key.user_id)
        if user is None or user.disabled:
            raise AuthenticationFailed("This account is disabled.", code="account_disabled")
        return key

    def _resolve(self, key: KeyInfo, model: str) -> tuple[list[Channel], Price]:
        snap = self.state.snapshot
        channels = snap.routes.get(model)
        price = snap.prices.get(model)
        if not channels or price is None:
            raise NotFound(
                f"The model '{model}' does not exist or is not available.",
                param="model",
                code="model_not_found",
            )
        if key.models is not None and model not in key.models:
            raise PermissionDenied(f"This API key is not allowed to use the model '{model}'.", param="model")
        return channels, price

    def _check_limits(self, key: KeyInfo) -> dict[str, str]:
        user = self.state.snapshot.users.get(key.user_id)
        rpm = key.rpm_limit or (user.rpm_limit if user else None) or self.state.settings.default_rpm
        if not rpm:
            return {}
        return self.state.limiter.check_rpm(key.id, rpm)

    # -- upstream attempts ------------------------------------------------------------------

    async def _attempt_all(
        self,
        ctx: Context,
        call: Call,
        channels: list[Channel],
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        """Try candidates in order; fail over only before anything reached the client."""
        settings = self.state.settings
        deadline = time.monotonic() + settings.upstream_total_timeout
        ordered = candidates(channels)[: settings.max_attempts]
        last_error: GatewayError | None = None
        for channel in ordered:
            if time.monotonic() >= deadline:
                break
            ctx.outcome.attempts += 1
            ctx.outcome.channel_id = channel.id
            call.upstream_model = channel.upstream_model(ctx.model)
            provider = REGISTRY[channel.provider]
            try:
                if ctx.endpoint == "chat" and ctx.stream:
                    await self._stream(ctx, call, channel, provider, receive, send, extra, deadline)
                else:
                    await self._unary(ctx, call, channel, provider, send, extra)
                return
            except GatewayError as exc:
                if ctx.outcome.delivered or not _retryable(exc):
                    raise
                last_error = exc
                log.warning(
                    "%s attempt %d on channel %s failed: %s",
                    ctx.request_id,
                    ctx.outcome.attempts,
                    channel.name,
                    exc.code,
                )
        raise last_error or UpstreamTimeout("The upstream provider did not answer in time.")

    async def _unary(
        self,
        ctx: Context,
        call: Call,
        channel: Channel,
        provider: Provider,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        chat = ctx.endpoint == "chat"
        if provider.local:
            local: Any = provider
            upstream_body = local.respond(call) if chat else local.respond_embeddings(call)
        else:
            req = provider.chat_request(channel, call) if chat else provider.embeddings_request(channel, call)
            resp = await forward.open_response(self.state.http, req)
            async with resp:
                if resp.status != 200:
                    error_body = await forward.read_all(resp, forward.MAX_ERROR_BODY)
                    raise provider.error_for(resp.status, error_body, resp.headers)
                upstream_body = await forward.read_all(resp)
        if chat:
            out, usage = provider.chat_response(call, upstream_body)
        else:
            out, usage = provider.embeddings_response(call, upstream_body)
        ctx.outcome.usage = usage
        ctx.outcome.delivered = True
        if usage is None and chat:
            ctx.outcome.completion_chars = _message_chars(out)
        ctx.outcome.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
        await send_json(send, 200, out, extra)

    async def _stream(
        self,
        ctx: Context,
        call: Call,
        channel: Channel,
        provider: Provider,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        deadline: float,
    ) -> None:
        translator = provider.stream_translator(call)
        resp: aiohttp.ClientResponse | None = None
        if not provider.local:
            req = provider.chat_request(channel, call)
            resp = await forward.open_response(self.state.http, req)
            if resp.status != 200:
                async with resp:
                    error_body = await forward.read_all(resp, forward.MAX_ERROR_BODY)
                raise provider.error_for(resp.status, error_body, resp.headers)
        # From here on the client has a 200 and an event stream: failures become error events.
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *extra]})
        ctx.outcome.delivered = True
        watcher = asyncio.create_task(_watch_disconnect(receive, ctx, asyncio.current_task()))
        try:
            if resp is None:
                local: Any = provider
                await self._relay_events(ctx, translator, local.respond_stream(call), send)
            else:
                async with resp:
                    await self._relay_upstream(ctx, translator, resp, send, deadline)
        finally:
            watcher.cancel()
            # also on cancellation (client gone): bill what was generated so far
            ctx.outcome.usage = translator.usage
            ctx.outcome.completion_chars = translator.completion_chars

    async def _relay_events(
        self, ctx: Context, translator: StreamTranslator, payloads: list[bytes], send: Send
    ) -> None:
        for payload in payloads:
            out = translator.feed(payload)
            if out:
                await self._send_chunks(ctx, out, send)
            if translator.finished:
                break
        await self._end_stream(ctx, translator, send)

    async def _relay_upstream(
        self,
        ctx: Context,
        translator: StreamTranslator,
        resp: aiohttp.ClientResponse,
        send: Send,
        deadline: float,
    ) -> None:
        settings = self.state.settings
        decoder = SSEDecoder()
        idle = 0.0
        try:
            while not translator.finished:
                if time.monotonic() >= deadline:
                    raise UpstreamTimeout("The upstream provider exceeded the total time limit.")
                try:
                    # readany() never consumes partially, so a timeout here loses no bytes
                    async with asyncio.timeout(settings.keepalive_seconds):
                        data = await resp.content.readany()
                except TimeoutError:
                    idle += settings.keepalive_seconds
                    if idle >= settings.upstream_idle_timeout:
                        raise UpstreamTimeout("The upstream provider went silent.") from None
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    continue
                idle = 0.0
                payloads = decoder.feed(data) if data else decoder.flush()
                for payload in payloads:
                    out = translator.feed(payload)
                    if out:
                        await self._send_chunks(ctx, out, send)
                    if translator.finished:
                        break
                if not data:
                    break
        except aiohttp.ServerTimeoutError:
            translator.error = UpstreamTimeout("The upstream provider went silent.")
        except (aiohttp.ClientError, OSError):
            translator.error = UpstreamError(
                "The upstream connection broke while streaming the response.",
                code="upstream_stream_broken",
            )
        except UpstreamTimeout as exc:
            translator.error = exc
        ctx.outcome.usage = translator.usage
        await self._end_stream(ctx, translator, send)

    async def _send_chunks(self, ctx: Context, out: list[bytes], send: Send) -> None:
        if ctx.outcome.ttft_ms is None:
            ctx.outcome.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
        body = frame(out[0]) if len(out) == 1 else b"".join(frame(p) for p in out)
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _end_stream(self, ctx: Context, translator: StreamTranslator, send: Send) -> None:
        error = translator.error
        if error is None and not translator.finished:
            error = UpstreamError(
                "The upstream provider ended the stream before it was complete.",
                code="upstream_stream_truncated",
            )
        if error is not None:
            ctx.outcome.status, ctx.outcome.error_code = error.status, error.code
            tail = frame(error.to_json())
        else:
            tail = DONE
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    # -- money and the usage row ------------------------------------------------------------

    def _client_gone(self, ctx: Context) -> bool:
        if ctx.outcome.status != CLIENT_CLOSED:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def _settle(self, ctx: Context, res: Reservation) -> None:
        """Exactly once per request, whatever happened. Synchronous: cancellation cannot split it."""
        outcome = ctx.outcome
        usage = outcome.usage
        estimated = False
        if usage is None and outcome.delivered:
            # the upstream reported nothing (or the client left first): estimate, never bill $0
            usage = Usage(
                prompt_tokens=estimate_prompt_tokens(ctx.body),
                completion_tokens=text_tokens(outcome.completion_chars),
            )
            estimated = True
        usage = usage or Usage()
        price = ctx.price
        cost = request_cost(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            input_per_1m=price.input_per_1m,
            output_per_1m=price.output_per_1m,
            cached_input_per_1m=price.cached_input_per_1m,
        )
        debit = self.state.ledger.settle(res, cost)
        self.state.usage.record(
            UsageRecord(
                request_id=ctx.request_id,
                user_id=ctx.key.user_id,
                key_id=ctx.key.id,
                endpoint=ctx.endpoint,
                model=ctx.model,
                channel_id=outcome.channel_id,
                stream=ctx.stream,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                usage_estimated=estimated,
                cost_micros=debit.amount if debit else 0,
                status_code=outcome.status,
                error_code=outcome.error_code,
                attempts=outcome.attempts,
                latency_ms=int((time.perf_counter() - ctx.started) * 1000),
                ttft_ms=outcome.ttft_ms,
                client_ip=ctx.client_ip,
                user_agent=(ctx.user_agent or "")[:512] or None,
                created_at=datetime.now(UTC),
            ),
            debit,
        )


def _retryable(exc: GatewayError) -> bool:
    if isinstance(exc, InvalidRequest):
        return False
    return isinstance(exc, UpstreamError | RateLimited)


def _message_chars(body: bytes) -> int:
    try:
        parsed = orjson.loads(body)
        return sum(len(c["message"].get("content") or "") for c in parsed.get("choices", ()))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return 0


async def _watch_disconnect(receive: Receive, ctx: Context, task: asyncio.Task[Any] | None) -> None:
    """A client that hangs up mid-stream cancels the relay; `_settle` then bills what was sent."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            ctx.outcome.status, ctx.outcome.error_code = CLIENT_CLOSED, "client_closed"
            if task is not None:
                task.cancel()
            return
