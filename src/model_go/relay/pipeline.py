"""The hot path. One client request, end to end:

    parse → authenticate → resolve model → limits → reserve → route → forward → stream out
          → meter → settle exactly once (in `finally`) → enqueue the usage row

Route: candidate channels by priority and weight, minus those the in-memory health skips (open
circuits, channels just disabled); fail over only before the first byte reached the client, within
`max_attempts` and the total deadline. Each try is one Attempt (relay/attempt.py), which tells the
health how it went.

A route with a dialect (Anthropic's /v1/messages, OpenAI's /v1/responses, Gemini's generateContent
routed by relay/gemini_api.py: dialects/) converts its request to the canonical OpenAI format on the
way in and the reply, stream and errors back on the way out; the rest is shared. On a channel that
speaks the dialect itself (Anthropic, OpenAI, Gemini), the client's body goes upstream and the reply
comes back untranslated.

Nothing here touches the database on the way: keys, channels and prices come from the in-memory
snapshot (a key newer than the snapshot costs one lookup, relay/auth.py), money from the ledger, the
usage row is written later by the batched writer, and health changes by their own writer task.
Prompt and response text never reach a log line, an error message or a stored row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime

import orjson

from model_go.billing.ledger import Debit, Reservation
from model_go.billing.pricing import Price
from model_go.billing.reservation import CAP_BYTES, count_images, may_hold_media, prompt_bound
from model_go.dialects import Dialect
from model_go.dialects.anthropic import AnthropicMessages, count_tokens
from model_go.dialects.responses import OpenAIResponses
from model_go.dialects.responses.request import NOT_STORED
from model_go.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    UpstreamTimeout,
    UsageBacklog,
)
from model_go.observability.logs import ACCESS
from model_go.observability.metrics import NO_LABEL, RequestFigures
from model_go.observability.request_ids import new_request_id
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.relay import gemini_api
from model_go.relay.asgi import Receive, Scope, Send, encode_headers, header, read_body, send_error, send_json
from model_go.relay.attempt import Attempt, Upstreams
from model_go.relay.auth import database_or_503, raw_key_from
from model_go.relay.context import CLIENT_CLOSED, Context, Once, usage_or_estimate
from model_go.relay.health import REFUSED, retryable
from model_go.relay.idempotency import checked_key
from model_go.relay.limits import UNLIMITED, Admission
from model_go.relay.routing import candidates
from model_go.relay.snapshot import KeyInfo
from model_go.state import AppState
from model_go.tokens import estimate_prompt_tokens
from model_go.usage.writer import UsageRecord
from model_go.wire import openai as wire
from model_go.wire.canonical import Call, Usage

log = logging.getLogger("model_go.relay")


class Relay:
    """The /v1 endpoints. Built once per running server, in the lifespan, from its AppState."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings = state.settings
        self.anthropic = AnthropicMessages()
        self.openai_responses = OpenAIResponses()
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

    async def responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guard(scope, receive, send, "responses", self.openai_responses)

    async def stored_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET / DELETE /v1/responses/{id} and its sub-resources: there is nothing stored to serve."""
        try:
            await self._authenticate(scope)
            raise InvalidRequest(NOT_STORED, code="unsupported_parameter")
        except GatewayError as exc:
            await send_error(send, exc)

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

    async def gemini(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every path of the Gemini API (relay/gemini_api.py reads the model and method from it)."""
        await gemini_api.serve(self, scope, receive, send)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        if gemini_api.google_way(scope):  # a Gemini client (x-goog-api-key or ?key=): Gemini's list
            await gemini_api.serve(self, scope, receive, send)
            return
        try:
            key = await self._authenticate(scope)
            prices = self.state.snapshot.prices
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "model-go", **prices[m].listing()}
                for m in self.state.snapshot.models_for(key)
            ]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))
        except GatewayError as exc:
            await send_error(send, exc)

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, dialect: Dialect | None = None
    ) -> None:
        request_id = new_request_id()
        extra = [(b"x-request-id", request_id.encode())]
        if dialect is not None:
            extra.append((b"request-id", extra[0][1]))  # where Anthropic's SDKs look for it
        started = time.perf_counter()
        status = 500
        ctx: Context | None = None
        try:
            ctx = await self._admit(scope, receive, endpoint, dialect, request_id, started)
            status = await self._serve(ctx, receive, send)
        except GatewayError as exc:
            status = exc.status
            await self._send_error(send, exc, dialect, [*extra, _overhead(ctx, started)])
        except ConnectionResetError:
            status = CLIENT_CLOSED
        except Exception:
            # the traceback carries no request data: bodies live only in local variables
            log.exception("unexpected error in %s request %s", endpoint, request_id)
            await self._send_error(send, GatewayError(), dialect, [*extra, _overhead(ctx, started)])
        finally:
            self._observe(scope, endpoint, request_id, status, started, ctx)

    def _observe(
        self, scope: Scope, endpoint: str, request_id: str, status: int, started: float, ctx: Context | None
    ) -> None:
        """The request's metrics and its log line: ids, counts, the model and the status, never text."""
        seconds = time.perf_counter() - started
        outcome = ctx.outcome if ctx is not None else None
        usage = (outcome.usage if outcome is not None else None) or Usage()
        figures = RequestFigures(
            route=endpoint,
            status=status,
            seconds=seconds,
            model=ctx.model if ctx is not None else NO_LABEL,
            channel_id=outcome.channel_id if outcome is not None else None,
            ttft_seconds=outcome.ttft_ms / 1000
            if outcome is not None and outcome.ttft_ms is not None
            else None,
            overhead_seconds=outcome.overhead_seconds if outcome is not None else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_micros=outcome.cost_micros if outcome is not None else 0,
            rate_limited=status == 429 and (outcome is None or outcome.attempts == 0),
        )
        self.state.metrics.request(figures)
        if not self.settings.access_log:
            return
        fields: dict[str, object] = {
            "request_id": request_id,
            "route": scope["path"],
            "status": status,
            "latency_ms": round(seconds * 1000, 1),
        }
        if ctx is not None:
            fields.update(
                key_id=ctx.key.id,
                user_id=ctx.key.user_id,
                model=ctx.model,
                channel_id=figures.channel_id,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=figures.cost_micros / 1_000_000,
                overhead_ms=None
                if figures.overhead_seconds is None
                else round(figures.overhead_seconds * 1000, 2),
            )
        log.info(
            "%s %s %d %.1fms",
            request_id,
            scope["path"],
            status,
            seconds * 1000,
            extra={"fields": fields, ACCESS: True},
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
        original_size = len(raw)
        once = self._idempotency(scope, key, raw)
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
            client_ip=self.state.proxies.of_scope(scope),
            user_agent=header(scope, b"user-agent"),
            chat=chat,
            dialect=dialect,
            original=original if dialect is not None else None,
            original_size=original_size,
            requested_output=request.max_output if request is not None else None,
            choices=request.n if request is not None else 1,
            idempotency=once,
        )

    def _idempotency(self, scope: Scope, key: KeyInfo, raw: bytes) -> Once | None:
        """The keyed hashes of the request's Idempotency-Key and body, when it carries one."""
        value = header(scope, b"idempotency-key")
        if value is None:
            return None
        fingerprint = self.state.keyring.fingerprint
        return Once(
            key_hash=fingerprint(b"%d" % key.id, checked_key(value).encode()),
            body_hash=fingerprint(raw),
        )

    async def _serve(self, ctx: Context, receive: Receive, send: Send) -> int:
        """Limits, the Idempotency-Key, then the request itself."""
        state, key = self.state, ctx.key
        admission = await self._check_limits(ctx)
        try:
            once = ctx.idempotency
            if once is None:
                await self._run(ctx, receive, send, admission.headers)
                return ctx.outcome.status
            await state.idempotency.claim(key.id, once.key_hash, once.body_hash, ctx.request_id)
            try:
                await self._run(ctx, receive, send, admission.headers)
            finally:
                state.idempotency.finish(key.id, once.key_hash, ctx.outcome.status, ctx.outcome.cost_micros)
        finally:
            # whatever ended the request (its end, an error, the client leaving, a cancellation): the
            # token estimate becomes what it used, and its concurrency slots come back
            if admission is not UNLIMITED:
                state.limiter.settle(admission, ctx.outcome.tokens)
        return ctx.outcome.status

    async def _run(self, ctx: Context, receive: Receive, send: Send, limit_headers: dict[str, str]) -> None:
        """The reservation, the attempts, and the settlement in `finally`."""
        try:
            if self.state.usage.backlogged:
                raise UsageBacklog()
            res = await self._reserve(ctx)
            await self.state.budgets.check(ctx.key.id, res, self.state.ledger.release)  # 402 when over
        except GatewayError as exc:
            ctx.outcome.failed(exc)
            raise
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
        except Exception:
            ctx.outcome.failed(GatewayError())  # the usage row says what the client got: a 500
            raise
        finally:
            self._settle(ctx, res)

    async def _reserve(self, ctx: Context) -> Reservation:
        """Hold the most this request can cost, and fix the output cap every upstream is sent.

        The prompt is bounded from the bytes that go upstream (the client's own body too, when a
        channel may take it as it is), media parts by the catalogue. The output is the client's cap,
        else the model's max output; a balance short of that but not of `min_output_tokens` holds
        what it has and the cap shrinks to what that pays for (the reply then ends with `length`)."""
        price, call = ctx.price, ctx.call
        prompt = self._prompt_bound(ctx)
        ctx.images = count_images(call.body) if price.image_micros and may_hold_media(call.raw) else 0
        user_id, ledger = ctx.key.user_id, self.state.ledger
        if not ctx.chat:
            amount = price.reservation(prompt, 0, ctx.images)
            return await ledger.reserve(user_id, amount, ctx.request_id, free=price.free)
        wanted = ctx.requested_output or price.spec.max_output_tokens
        least = min(wanted, self.settings.min_output_tokens)
        full = price.reservation(prompt, wanted * ctx.choices, ctx.images)
        res = await ledger.reserve(
            user_id,
            full,
            ctx.request_id,
            minimum=price.reservation(prompt, least * ctx.choices, ctx.images),
            free=price.free,
        )
        cap = wanted
        if res.amount < full:
            affords = price.affordable_output(
                res.amount, prompt_tokens=prompt, images=ctx.images, choices=ctx.choices
            )
            cap = max(min(wanted, affords), 1)
        ctx.call = dataclasses.replace(call, output_cap=cap)
        return res

    def _prompt_bound(self, ctx: Context) -> int:
        call, spec = ctx.call, ctx.price.spec
        # the bytes a channel adds on the way: the output cap, and a longer upstream model name
        longest = max(len(channel.upstream_model(ctx.model)) for channel in ctx.channels)
        extra = CAP_BYTES + max(longest - len(ctx.model), 0)
        if ctx.original is not None:  # a dialect: the converted body, or the client's own on passthrough
            return max(
                prompt_bound(call.body, len(call.raw) + extra, spec),
                prompt_bound(ctx.original, ctx.original_size + extra, spec),
            )
        if may_hold_media(call.raw):
            return prompt_bound(call.body, len(call.raw) + extra, spec)
        return min(len(call.raw) + extra, spec.context_length)

    async def _authenticate(self, scope: Scope) -> KeyInfo:
        authorization, x_api_key = header(scope, b"authorization"), header(scope, b"x-api-key")
        if authorization is None and x_api_key is None:  # Gemini's ways, looked at only then
            x_api_key = gemini_api.google_key(scope)
        raw_key = raw_key_from(authorization, x_api_key)
        key_hash, key = self.state.authenticator.known(self.state.snapshot, raw_key)
        if key is None:
            key = await self.state.authenticator.lookup(key_hash)
            with database_or_503():
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

    async def _check_limits(self, ctx: Context) -> Admission:
        """Count the request against its key's and its user's limits (429 when over any)."""
        key, snap = ctx.key, self.state.snapshot
        user = snap.users.get(key.user_id)
        user_limits = user.limits if user is not None else snap.default_limits
        if not key.limits.active and not user_limits.active:
            return UNLIMITED  # nothing to count: the common case costs no call
        tokens = 0
        if key.limits.tpm is not None or user_limits.tpm is not None:
            tokens = self._token_estimate(ctx)
        return await self.state.limiter.admit(key.id, key.limits, key.user_id, user_limits, tokens)

    def _token_estimate(self, ctx: Context) -> int:
        """Tokens a minute are charged at admission with the prompt's typical-case estimate and the
        output the request may ask for (the reservation's cap before a short balance shrinks it);
        the settlement corrects it to the real count."""
        if not ctx.chat:
            return estimate_prompt_tokens(ctx.call.body)
        output = ctx.requested_output or ctx.price.spec.max_output_tokens
        return estimate_prompt_tokens(ctx.call.body) + output * ctx.choices

    # -- upstream attempts ------------------------------------------------------------------

    async def _attempt_all(
        self, ctx: Context, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        """Try candidates in order; fail over only before anything reached the client."""
        settings, health = self.settings, self.state.health
        channels = self._channels_for(ctx)
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
                self.state.metrics.attempt(channel.id, ok=True)
                return
            except GatewayError as exc:
                self.state.metrics.attempt(channel.id, ok=False)
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

    def _channels_for(self, ctx: Context) -> list[Channel]:
        """The model's channels, but for a dialect request that only a channel speaking the dialect
        can serve (say, a Responses request naming stored state) only those, when the model has any;
        when it has none, the first attempt refuses the request with the reason."""
        dialect, original = ctx.dialect, ctx.original
        if dialect is None or original is None:
            return ctx.channels
        try:
            dialect.translated(original)
        except GatewayError:
            return [c for c in ctx.channels if dialect.passthrough(c.provider)] or ctx.channels
        return ctx.channels

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
        cost = ctx.cost(usage)
        debit = self.state.ledger.settle(res, cost)
        ctx.outcome.billed(
            debit.amount if debit is not None else 0, usage.prompt_tokens + usage.completion_tokens
        )
        self.state.budgets.settle(ctx.key.id, res.request_id, debit.amount if debit else 0)
        overrun = max(cost - res.amount, 0) if debit is not None else 0
        if overrun:
            # an upstream that ignored the output cap: billed in full, and the operator should know
            log.warning(
                "overrun: request %s on channel %s cost %d µ$, %d µ$ beyond its reservation"
                " (output cap %s tokens, %d produced)",
                ctx.request_id,
                ctx.outcome.channel_id,
                cost,
                overrun,
                ctx.call.output_cap,
                usage.completion_tokens,
            )
        self.state.usage.record(_usage_row(ctx, usage, estimated, debit, overrun), debit)


def _usage_row(ctx: Context, usage: Usage, estimated: bool, debit: Debit | None, overrun: int) -> UsageRecord:
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
        cache_write_tokens=usage.cache_write_tokens,
        usage_estimated=estimated,
        cost_micros=debit.amount if debit else 0,
        overrun_micros=overrun,
        status_code=outcome.status,
        error_code=outcome.error_code,
        attempts=outcome.attempts,
        latency_ms=int((time.perf_counter() - ctx.started) * 1000),
        ttft_ms=outcome.ttft_ms,
        client_ip=ctx.client_ip,
        user_agent=(ctx.user_agent or "")[:512] or None,
        created_at=datetime.now(UTC),
        idempotency_hash=ctx.idempotency.key_hash if ctx.idempotency else None,
        body_hash=ctx.idempotency.body_hash if ctx.idempotency else None,
    )


def _overhead(ctx: Context | None, started: float) -> tuple[bytes, bytes]:
    """x-modelgo-overhead-ms for an error answer: all of its time but the upstream's."""
    if ctx is None:
        return (b"x-modelgo-overhead-ms", b"%.2f" % ((time.perf_counter() - started) * 1000))
    return ctx.outcome.overhead_header(started)
