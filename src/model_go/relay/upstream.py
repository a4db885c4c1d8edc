"""One upstream attempt: open the request (with the channel's deadlines), then relay the reply
whole, or stream it event by event with keep-alives while the upstream is silent. The health hears
of the outcome: success once the upstream answered, failure when it broke mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from model_go.errors import GatewayError, UpstreamError, UpstreamTimeout
from model_go.providers import REGISTRY, errors
from model_go.providers.base import Call, Channel, Provider, StreamTranslator, UpstreamRequest
from model_go.relay import anthropic_passthrough, forward
from model_go.relay.asgi import Receive, Send, send_json
from model_go.relay.context import CLIENT_CLOSED, Context, message_chars, usage_or_estimate
from model_go.relay.policy import ChannelPolicy
from model_go.tokens import estimate_prompt_tokens
from model_go.wire.sse import DONE, KEEPALIVE, SSEDecoder, frame

if TYPE_CHECKING:
    from model_go.relay.pipeline import Relay

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
QUOTA_CODES = frozenset({"insufficient_quota", "billing_error", "billing_hard_limit_reached"})


async def open_upstream(
    relay: Relay, provider: Provider, policy: ChannelPolicy, req: UpstreamRequest
) -> aiohttp.ClientResponse:
    """The upstream's response with status 200, or the error its failure maps to."""
    resp = await forward.open_response(relay.state.http, req, policy.client_timeout, policy.first_byte_guard)
    if resp.status == 200:
        return resp
    async with resp:
        error_body = await forward.read_all(resp, forward.MAX_ERROR_BODY)
    raise upstream_failure(provider, resp.status, error_body, resp.headers)


async def unary(
    relay: Relay,
    ctx: Context,
    call: Call,
    channel: Channel,
    policy: ChannelPolicy,
    send: Send,
    extra: list[tuple[bytes, bytes]],
    deadline: float,
) -> None:
    provider = REGISTRY[channel.provider]
    dialect = ctx.dialect
    passthrough = dialect is not None and dialect.passthrough(provider.name)
    if provider.local:
        local: Any = provider
        upstream_body = local.respond(call) if ctx.chat else local.respond_embeddings(call)
    else:
        req = upstream_request(ctx, call, channel, provider, passthrough)
        # an asyncio timer costs ~10 µs: only when the total deadline can be nearer than the
        # first-byte and idle bounds the shared session already enforces
        now = time.monotonic()
        attempt_deadline = min(deadline, now + policy.total_timeout)
        if policy.custom_total or attempt_deadline - now < policy.first_byte_timeout:
            try:
                async with asyncio.timeout_at(attempt_deadline):
                    upstream_body = await fetch(relay, provider, policy, req)
            except TimeoutError:
                raise UpstreamTimeout("The upstream provider exceeded the total time limit.") from None
        else:
            upstream_body = await fetch(relay, provider, policy, req)
    if passthrough:
        out, usage = anthropic_passthrough.reply(upstream_body)
    elif ctx.chat:
        out, usage = provider.chat_response(call, upstream_body)
    else:
        out, usage = provider.embeddings_response(call, upstream_body)
    ctx.outcome.usage = usage
    ctx.outcome.delivered = True
    if usage is None and ctx.chat:
        ctx.outcome.completion_chars = message_chars(out)
    ctx.outcome.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
    if dialect is not None and not passthrough:
        out = dialect.reply(out, ctx.request_id, ctx.model, usage_or_estimate(ctx))
    await send_json(send, 200, out, extra)


def upstream_request(
    ctx: Context, call: Call, channel: Channel, provider: Provider, passthrough: bool
) -> UpstreamRequest:
    if passthrough and ctx.original is not None:
        return anthropic_passthrough.request(provider, channel, call, ctx.original)
    return provider.chat_request(channel, call) if ctx.chat else provider.embeddings_request(channel, call)


async def fetch(relay: Relay, provider: Provider, policy: ChannelPolicy, req: UpstreamRequest) -> bytes:
    resp = await forward.open_response(relay.state.http, req, policy.client_timeout, policy.first_byte_guard)
    async with resp:
        if resp.status != 200:
            error_body = await forward.read_all(resp, forward.MAX_ERROR_BODY)
            raise upstream_failure(provider, resp.status, error_body, resp.headers)
        return await forward.read_all(resp)


async def stream(
    relay: Relay,
    ctx: Context,
    call: Call,
    channel: Channel,
    policy: ChannelPolicy,
    admission: int,
    receive: Receive,
    send: Send,
    extra: list[tuple[bytes, bytes]],
    deadline: float,
) -> None:
    provider = REGISTRY[channel.provider]
    dialect = ctx.dialect
    passthrough = dialect is not None and dialect.passthrough(provider.name)
    translator: StreamTranslator = (
        anthropic_passthrough.PassthroughStream() if passthrough else provider.stream_translator(call)
    )
    resp: aiohttp.ClientResponse | None = None
    if not provider.local:
        req = upstream_request(ctx, call, channel, provider, passthrough)
        resp = await open_upstream(relay, provider, policy, req)
    # The upstream answered: that closes a half-open circuit now, not when a long stream ends.
    relay.health.succeeded(channel, ctx.model, admission, policy)
    # From here on the client has a 200 and an event stream: failures become error events.
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *extra]})
    ctx.outcome.delivered = True
    if passthrough:
        ctx.egress = anthropic_passthrough.PassthroughEgress()
    elif dialect is not None:
        ctx.egress = dialect.stream(ctx.request_id, ctx.model, estimate_prompt_tokens(ctx.body))
        await send({"type": "http.response.body", "body": ctx.egress.feed([]), "more_body": True})
    watcher = asyncio.create_task(_watch_disconnect(receive, ctx, asyncio.current_task()))
    try:
        if resp is None:
            local: Any = provider
            await relay_events(ctx, translator, local.respond_stream(call), send)
        else:
            attempt_deadline = min(deadline, time.monotonic() + policy.total_timeout)
            async with resp:
                await relay_upstream(relay, ctx, translator, resp, send, attempt_deadline, policy)
            if translator.error is not None and ctx.outcome.status != CLIENT_CLOSED:
                relay.record_failure(channel, ctx.model, admission, translator.error, policy)
    finally:
        watcher.cancel()
        # also on cancellation (client gone): bill what was generated so far
        ctx.outcome.usage = translator.usage
        ctx.outcome.completion_chars = translator.completion_chars


async def relay_events(ctx: Context, translator: StreamTranslator, payloads: list[bytes], send: Send) -> None:
    for payload in payloads:
        out = translator.feed(payload)
        if out:
            await send_chunks(ctx, out, send)
        if translator.finished:
            break
    await end_stream(ctx, translator, send)


async def relay_upstream(
    relay: Relay,
    ctx: Context,
    translator: StreamTranslator,
    resp: aiohttp.ClientResponse,
    send: Send,
    deadline: float,
    policy: ChannelPolicy,
) -> None:
    keepalive = relay.state.settings.keepalive_seconds
    decoder = SSEDecoder()
    idle = 0.0
    try:
        while not translator.finished:
            if time.monotonic() >= deadline:
                raise UpstreamTimeout("The upstream provider exceeded the total time limit.")
            try:
                # readany() never consumes partially, so a timeout here loses no bytes
                async with asyncio.timeout(keepalive):
                    data = await resp.content.readany()
            except TimeoutError:
                idle += keepalive
                if idle >= policy.idle_timeout:
                    raise UpstreamTimeout("The upstream provider went silent.") from None
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                continue
            idle = 0.0
            payloads = decoder.feed(data) if data else decoder.flush()
            for payload in payloads:
                out = translator.feed(payload)
                if out:
                    await send_chunks(ctx, out, send)
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
    await end_stream(ctx, translator, send)


async def send_chunks(ctx: Context, out: list[bytes], send: Send) -> None:
    if ctx.outcome.ttft_ms is None:
        ctx.outcome.ttft_ms = int((time.perf_counter() - ctx.started) * 1000)
    if ctx.egress is None:
        body = frame(out[0]) if len(out) == 1 else b"".join(frame(p) for p in out)
    else:
        body = ctx.egress.feed(out)
        if not body:
            return
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def end_stream(ctx: Context, translator: StreamTranslator, send: Send) -> None:
    error = translator.error
    if error is None and not translator.finished:
        error = translator.error = UpstreamError(
            "The upstream provider ended the stream before it was complete.",
            code="upstream_stream_truncated",
        )
    if error is not None:
        ctx.outcome.status, ctx.outcome.error_code = error.status, error.code
    if ctx.egress is not None:
        ctx.outcome.usage = translator.usage
        ctx.outcome.completion_chars = translator.completion_chars
        tail = ctx.egress.end(usage_or_estimate(ctx), error)
    else:
        tail = frame(error.to_json()) if error is not None else DONE
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def upstream_failure(
    provider: Provider, status: int, body: bytes, headers: Mapping[str, str]
) -> GatewayError:
    """The provider's mapping of a failed upstream answer, except that an exhausted upstream
    account is named as such (OpenAI says 429 insufficient_quota, Anthropic 400 about the credit
    balance): that is the channel's problem, to fail over from and to disable, not the client's."""
    if (
        status == 402
        or errors.upstream_code(body) in QUOTA_CODES
        or (status == 400 and b"credit balance" in body)
    ):
        return UpstreamError("The upstream provider account is out of quota.", code="upstream_quota")
    return provider.error_for(status, body, headers)


async def _watch_disconnect(receive: Receive, ctx: Context, task: asyncio.Task[Any] | None) -> None:
    """A client that hangs up mid-stream cancels the relay; `_settle` then bills what was sent."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            ctx.outcome.status, ctx.outcome.error_code = CLIENT_CLOSED, "client_closed"
            if task is not None:
                task.cancel()
            return
