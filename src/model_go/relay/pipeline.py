"""The hot path. One client request, end to end:

    parse → authenticate → resolve model → limits → reserve → route → forward → stream out
          → meter → settle exactly once (in `finally`) → enqueue the usage row

Route: candidate channels by priority and weight, minus those the in-memory health skips (open
circuits, channels just disabled); fail over only before the first byte reached the client, within
`max_attempts` and the total deadline. Each try is one Attempt (relay/attempt.py), which tells the
health how it went.

A route with a dialect (Anthropic's /v1/messages, dialects/anthropic) converts its request to the
canonical OpenAI format on the way in and the reply, stream and errors back on the way out; the rest
is shared. On a channel that speaks the dialect itself (an Anthropic channel), the client's body goes
upstream and the reply comes back untranslated.

Nothing here touches the database on the way: keys, channels and prices come from the in-memory
snapshot (a key newer than the snapshot costs one lookup, relay/auth.py), money from the ledger, the
usage row is written later by the batched writer, and health changes by their own writer task.
Prompt and response text never reach a log line, an error message or a stored row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from datetime import UTC, datetime

import orjson

from model_go.billing.ledger import Debit, Reservation
from model_go.billing.money import request_cost
from model_go.dialects import Dialect
from model_go.dialects.anthropic import AnthropicMessages, count_tokens
from model_go.errors import GatewayError, MethodNotAllowed, NotFound, PermissionDenied, UpstreamTimeout
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.relay.asgi import Receive, Scope, Send, encode_headers, header, read_body, send_error, send_json
from model_go.relay.attempt import Attempt, Upstreams
from model_go.relay.auth import raw_key_from
from model_go.relay.context import CLIENT_CLOSED, Context, usage_or_estimate
from model_go.relay.health import REFUSED, retryable
from model_go.relay.routing import candidates
from model_go.relay.snapshot import KeyInfo, Price
from model_go.state import AppState
from model_go.tokens import prompt_token_bound
from model_go.usage.writer import UsageRecord
from model_go.wire import openai as wire
from model_go.wire.canonical import Call, ChatRequest, Usage

log = logging.getLogger("model_go.relay")


# Request ids: a random per-process prefix and a counter. Unique across replicas without a syscall per
# request (secrets.token_hex reads os.urandom every time).
_ID_PREFIX = "req_" + secrets.token_hex(6)
_id_counter = itertools.count(1)


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


class Relay:
    """The /v1 endpoints. Built once per running server, in the lifespan, from its AppState."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings = state.settings
        self.anthropic = AnthropicMessages()
        self.upstreams = Upstreams(
            transport=state.transport, health=state.health, keepalive_seconds=state.settings.keepalive_seconds
        )

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
            key = await self._authenticate(scope)
            raw = await read_body(scope, receive, self.settings.max_body_bytes)
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
            key = await self._authenticate(scope)
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "model-go"}
                for m in self.state.snapshot.models_for(key)
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
            ctx = await self._admit(scope, receive, endpoint, dialect, request_id, started)
            status = await self._serve(ctx, receive, send)
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
            if self.settings.access_log:
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

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        endpoint: str,
        dialect: Dialect | None,
        request_id: str,
        started: float,
    ) -> Context:
        """Authenticate, read and validate the body, and find the model's price: the request's Context."""
        key = await self._authenticate(scope)
        raw = await read_body(scope, receive, self.settings.max_body_bytes)
        body = original = wire.parse_json_object(raw)
        if dialect is not None:
            body = dialect.canonical(original)
            raw = orjson.dumps(body)  # what goes upstream, and what the reservation is bounded by
        chat = endpoint != "embeddings"
        request = wire.validate_chat(body) if chat else None
        model = request.model if request is not None else wire.validate_embeddings(body)
        channels, price = self._resolve(key, model)
        return Context(
            request_id=request_id,
            started=started,
            endpoint=endpoint,
            key=key,
            price=price,
            channels=channels,
            call=Call(
                body=body,
                raw=raw,
                model=model,
                upstream_model=model,
                stream=request is not None and request.stream,
                client_wants_usage=request is not None and request.wants_usage,
            ),
            client_ip=scope["client"][0] if scope.get("client") else None,
            user_agent=header(scope, b"user-agent"),
            chat=chat,
            dialect=dialect,
            original=original if dialect is not None else None,
            worst_output=self._worst_output(request),
        )

    def _worst_output(self, request: ChatRequest | None) -> int:
        """The output tokens the reservation covers: the request's cap (else the default) per choice;
        none for embeddings."""
        if request is None:
            return 0
        return (request.max_output or self.settings.default_max_output_tokens) * request.n

    async def _serve(self, ctx: Context, receive: Receive, send: Send) -> int:
        """Limits, reservation, the attempts, and the settlement in `finally`."""
        state, key = self.state, ctx.key
        limit_headers = self._check_limits(key)
        concurrency = self.settings.default_concurrency
        if concurrency:
            state.limiter.acquire(key.user_id, concurrency)
        try:
            res = state.ledger.reserve(key.user_id, self._reservation(ctx), ctx.request_id)
            state.budgets.reserve(key.id, res, state.ledger.release)  # the key's budgets (402 when over)
            extra = [(b"x-request-id", ctx.request_id.encode()), *encode_headers(limit_headers)]
            if ctx.dialect is not None:
                extra.append((b"request-id", extra[0][1]))
            try:
                await self._attempt_all(ctx, receive, send, extra)
            except asyncio.CancelledError:
                if not self._client_gone(ctx):
                    ctx.outcome.shut_down()
                    raise
            except GatewayError as exc:
                ctx.outcome.failed(exc)
                raise
            finally:
                self._settle(ctx, res)
        finally:
            if concurrency:
                state.limiter.release(key.user_id)
        return ctx.outcome.status

    def _reservation(self, ctx: Context) -> int:
        price = ctx.price
        return request_cost(
            prompt_tokens=prompt_token_bound(ctx.call.raw),
            completion_tokens=ctx.worst_output,
            cached_tokens=0,
            input_per_1m=price.input_per_1m,
            output_per_1m=price.output_per_1m,
            cached_input_per_1m=price.cached_input_per_1m,
        )

    async def _authenticate(self, scope: Scope) -> KeyInfo:
        raw_key = raw_key_from(header(scope, b"authorization"), header(scope, b"x-api-key"))
        key_hash, key = self.state.authenticator.known(self.state.snapshot, raw_key)
        if key is None:
            key = await self.state.authenticator.lookup(key_hash)
            await self.state.catch_up()  # the key is newer than the snapshot: so may its balance be
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
        rpm = key.rpm_limit or (user.rpm_limit if user else None) or self.settings.default_rpm
        if not rpm:
            return {}
        return self.state.limiter.check_rpm(key.id, rpm)

    # -- upstream attempts ------------------------------------------------------------------

    async def _attempt_all(
        self, ctx: Context, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        """Try candidates in order; fail over only before anything reached the client."""
        settings, health = self.settings, self.state.health
        channels = ctx.channels
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
            ctx.outcome.attempting(channel.id)
            attempt = Attempt(
                ctx=ctx,
                channel=channel,
                provider=REGISTRY[channel.provider],
                policy=self.state.policies.get(channel, settings),
                admission=admission,
                deadline=deadline,
                upstreams=self.upstreams,
            )
            try:
                await attempt.run(receive, send, extra)
                return
            except GatewayError as exc:
                if ctx.outcome.delivered or not retryable(exc):
                    raise  # a started stream already reported its own outcome
                last_error = exc
                log.warning(
                    "%s attempt %d on channel %s failed: %s",
                    ctx.request_id,
                    ctx.outcome.attempts,
                    channel.name,
                    exc.code,
                )
        if last_error is not None:
            raise last_error
        if skipped:
            raise health.refusal(channels, ctx.model)
        raise UpstreamTimeout("The upstream provider did not answer in time.")

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
        self.state.budgets.settle(ctx.key.id, res.request_id, debit.amount if debit else 0)
        self.state.usage.record(_usage_row(ctx, usage, estimated, debit), debit)


def _usage_row(ctx: Context, usage: Usage, estimated: bool, debit: Debit | None) -> UsageRecord:
    outcome = ctx.outcome
    return UsageRecord(
        request_id=ctx.request_id,
        user_id=ctx.key.user_id,
        key_id=ctx.key.id,
        endpoint=ctx.endpoint,
        model=ctx.model,
        channel_id=outcome.channel_id,
        stream=ctx.call.stream,
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
    )
