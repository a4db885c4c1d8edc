"""The hot path. One client request, end to end:

    parse → authenticate → resolve model → limits → reserve → route → forward → stream out
          → meter → settle exactly once (in `finally`) → enqueue the usage row

Route: candidate channels by priority and weight, minus those the in-memory health skips (open
circuits, channels just disabled); fail over only before the first byte reached the client, within
`max_attempts` and the total deadline. Every attempt's outcome feeds the health (relay/health.py).

A route with a dialect (Anthropic's /v1/messages) converts its request to the canonical OpenAI
format on the way in and the reply, stream and errors back on the way out; the rest is shared. On
a channel that speaks the dialect itself (an Anthropic channel), the client's body goes upstream
and the reply comes back untranslated (relay/anthropic_passthrough.py).

Nothing here touches the database: keys, channels and prices come from the in-memory snapshot,
money from the in-process ledger, the usage row is written later by the batched writer, and
health changes by their own writer task. Prompt and response text never reach a log line, an
error message or a stored row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from model_go.billing.ledger import Reservation
from model_go.billing.money import request_cost
from model_go.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from model_go.providers.base import Call, Channel, Usage
from model_go.relay import upstream
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
from model_go.relay.context import CLIENT_CLOSED, Context, usage_or_estimate
from model_go.relay.dialect import Dialect
from model_go.relay.health import REFUSED, Health
from model_go.relay.health_store import HealthStore
from model_go.relay.messages import AnthropicMessages, count_tokens
from model_go.relay.policy import ChannelPolicy, Policies
from model_go.relay.routing import candidates
from model_go.relay.snapshot import KeyInfo, Price
from model_go.tokens import prompt_token_bound
from model_go.usage.writer import UsageRecord
from model_go.wire import openai as wire

if TYPE_CHECKING:
    from model_go.state import AppState

log = logging.getLogger("model_go.relay")


# Request ids: a random per-process prefix and a counter. Unique across replicas without a syscall per
# request (secrets.token_hex reads os.urandom every time).
_ID_PREFIX = "req_" + secrets.token_hex(6)
_id_counter = itertools.count(1)


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


class Relay:
    """The /v1 endpoints. Built once per app; the lifespan hands it the live AppState."""

    state: AppState

    def __init__(self) -> None:
        self.health = Health()
        self.policies = Policies()
        self.anthropic = AnthropicMessages()

    # -- entry points -----------------------------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send, "chat")

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send, "embeddings")

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # the Starlette route sends every method here: 405 in Anthropic's shape
            error = MethodNotAllowed(
                f"Method {scope['method']} is not allowed here.", headers={"Allow": "POST"}
            )
            await self._send_error(send, error, self.anthropic, [])
            return
        await self._guard(scope, receive, send, "messages", self.anthropic)

    async def messages_count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Model-go's own estimate (about four characters a token), not the upstream's count: free."""
        dialect = self.anthropic
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(
                    f"Method {scope['method']} is not allowed here.", headers={"Allow": "POST"}
                )
            key = self._authenticate(scope)
            raw = await read_body(scope, receive, self.state.settings.max_body_bytes)
            model, tokens = count_tokens(raw)
            self._resolve(key, model)
            await send_json(send, 200, orjson.dumps({"input_tokens": tokens}))
        except GatewayError as exc:
            await self._send_error(send, exc, dialect, [])
        except ConnectionResetError:
            pass
        except Exception:
            log.exception("unexpected error in a count_tokens request")
            await self._send_error(send, GatewayError(), dialect, [])

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

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, dialect: Dialect | None = None
    ) -> None:
        request_id = _request_id()
        extra = [(b"x-request-id", request_id.encode())]
        if dialect is not None:
            extra.append((b"request-id", extra[0][1]))  # where Anthropic's SDKs look for it
        started = time.perf_counter()
        status = 500
        try:
            status = await self._handle(scope, receive, send, endpoint, dialect, request_id, started)
        except GatewayError as exc:
            status = exc.status
            await self._send_error(send, exc, dialect, extra)
        except ConnectionResetError:
            status = CLIENT_CLOSED
        except Exception:
            # the traceback carries no request data: bodies live only in local variables
            log.exception("unexpected error in %s request %s", endpoint, request_id)
            await self._send_error(send, GatewayError(), dialect, extra)
        finally:
            if self.state.settings.access_log:
                log.info(
                    "%s %s %d %.1fms",
                    request_id,
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )

    async def _send_error(
        self, send: Send, exc: GatewayError, dialect: Dialect | None, extra: list[tuple[bytes, bytes]]
    ) -> None:
        if dialect is None:
            await send_error(send, exc, extra)
        else:
            await send_json(send, exc.status, dialect.error_json(exc), [*encode_headers(exc.headers), *extra])

    # -- the pipeline -----------------------------------------------------------------------

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: str,
        dialect: Dialect | None,
        request_id: str,
        started: float,
    ) -> int:
        settings = self.state.settings
        key = self._authenticate(scope)
        raw = await read_body(scope, receive, settings.max_body_bytes)
        body = original = wire.parse_json_object(raw)
        if dialect is not None:
            body = dialect.canonical(original)
            raw = orjson.dumps(body)  # what goes upstream, and what the reservation is bounded by
        chat = endpoint != "embeddings"
        if chat:
            model, stream, wants_usage, max_out, n = wire.validate_chat(body)
        else:
            model, stream, wants_usage, max_out, n = (wire.validate_embeddings(body), False, False, 0, 1)
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
            chat=chat,
            dialect=dialect,
            original=original if dialect is not None else None,
        )
        limit_headers = self._check_limits(key)
        concurrency = settings.default_concurrency
        if concurrency:
            self.state.limiter.acquire(key.user_id, concurrency)
        try:
            worst_out = (max_out or settings.default_max_output_tokens) * n if chat else 0
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
            if dialect is not None:
                extra.append((b"request-id", extra[0][1]))
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
        health = self.health
        deadline = time.monotonic() + settings.upstream_total_timeout
        last_error: GatewayError | None = None
        skipped = False
        for channel in candidates(channels):
            if ctx.outcome.attempts >= settings.max_attempts or time.monotonic() >= deadline:
                break
            admission = health.admit(channel, ctx.model)
            if admission == REFUSED:
                skipped = True
                continue
            ctx.outcome.attempts += 1
            ctx.outcome.channel_id = channel.id
            call.upstream_model = channel.upstream_model(ctx.model)
            policy = self.policies.get(channel, settings)
            try:
                if ctx.chat and ctx.stream:
                    await upstream.stream(
                        self, ctx, call, channel, policy, admission, receive, send, extra, deadline
                    )
                else:
                    await upstream.unary(self, ctx, call, channel, policy, send, extra, deadline)
                    health.succeeded(channel, ctx.model, admission, policy)
                return
            except GatewayError as exc:
                if ctx.outcome.delivered:
                    raise  # the stream already reported its own outcome
                self.record_failure(channel, ctx.model, admission, exc, policy)
                if not _retryable(exc):
                    raise
                last_error = exc
                log.warning(
                    "%s attempt %d on channel %s failed: %s",
                    ctx.request_id,
                    ctx.outcome.attempts,
                    channel.name,
                    exc.code,
                )
            except BaseException:
                health.release(channel, ctx.model, admission)  # client gone or shutdown: no verdict
                raise
        if last_error is not None:
            raise last_error
        if skipped:
            raise health.refusal(channels, ctx.model)
        raise UpstreamTimeout("The upstream provider did not answer in time.")

    def record_failure(
        self, channel: Channel, model: str, admission: int, exc: GatewayError, policy: ChannelPolicy
    ) -> None:
        health = self.health
        if health.reporter is None:  # the first failure this process sees starts the health writer
            health.reporter = HealthStore(self.state.engine, self.state.tasks)
        health.failed(channel, model, admission, exc, policy)

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
            usage = usage_or_estimate(ctx)
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
