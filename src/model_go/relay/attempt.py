"""One upstream attempt: one channel, its provider, policy and deadline. It opens the request, then
relays the reply whole, or streams it event by event with keep-alives while the upstream is silent,
and tells the health how it went (success once the upstream answered, failure when it broke
mid-stream). Everything it needs is handed in; it never reaches back into the Relay."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from model_go.billing.money import MICROS_PER_USD
from model_go.dialects import Egress
from model_go.errors import GatewayError, UpstreamError, UpstreamTimeout
from model_go.providers.base import Channel, Provider, StreamTranslator, UpstreamRequest
from model_go.relay import forward
from model_go.relay.asgi import Receive, Send, send_json
from model_go.relay.context import CLIENT_CLOSED, Context, Outcome, message_chars, usage_or_estimate
from model_go.relay.health import Health
from model_go.relay.policy import ChannelPolicy
from model_go.tokens import estimate_prompt_tokens
from model_go.wire import openai as wire
from model_go.wire.canonical import Call
from model_go.wire.sse import DONE, KEEPALIVE, SSEDecoder, frame

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
Headers = list[tuple[bytes, bytes]]
log = logging.getLogger("model_go.relay")


@dataclass(frozen=True)
class Upstreams:
    """What every attempt shares, built once with the Relay."""

    transport: forward.UpstreamTransport
    health: Health
    keepalive_seconds: float  # a silent stream gets a `: keep-alive` comment this often


@dataclass
class Attempt:
    ctx: Context
    channel: Channel
    provider: Provider
    policy: ChannelPolicy
    admission: int  # what the health said when it admitted this channel (relay/health.py)
    deadline: float  # monotonic: the request's total deadline
    upstreams: Upstreams

    def __post_init__(self) -> None:
        call = self.ctx.call
        upstream_model = self.channel.upstream_model(call.model)
        self.call: Call = (
            call
            if upstream_model == call.upstream_model
            else dataclasses.replace(call, upstream_model=upstream_model)
        )
        dialect = self.ctx.dialect
        self.passthrough = dialect is not None and dialect.passthrough(self.provider.name)

    async def run(self, receive: Receive, send: Send, extra: Headers) -> None:
        """Relay the upstream's answer to the client; the health hears the verdict. Raises the
        attempt's error; once the client has a 200 the stream reports errors itself."""
        health, channel, model = self.upstreams.health, self.channel, self.ctx.model
        try:
            added = self._translated()
            if added:
                extra = [*extra, *added]
            if self.ctx.chat and self.call.stream:
                await self._stream(receive, send, extra)
            else:
                await self._unary(send, extra)
                health.succeeded(channel, model, self.admission, self.policy)
        except GatewayError as exc:
            if not self.ctx.outcome.delivered:
                health.failed(channel, model, self.admission, exc, self.policy)
            raise
        except Exception as exc:
            # anything else (e.g. a header the HTTP client refuses) is still this attempt failing
            error = unexpected_failure(self.ctx.request_id, channel, exc)
            if not self.ctx.outcome.delivered:
                health.failed(channel, model, self.admission, error, self.policy)
            raise error from None
        except BaseException:
            health.release(channel, model, self.admission)  # client gone or shutdown: no verdict
            raise

    # -- the request --------------------------------------------------------------------------

    def _translated(self) -> Headers:
        """A dialect's request served through the canonical format: its refusal, or its headers."""
        dialect, original = self.ctx.dialect, self.ctx.original
        if dialect is None or original is None or self.passthrough:
            return []
        return dialect.translated(original)

    def _request(self) -> UpstreamRequest:
        ctx, provider = self.ctx, self.provider
        if self.passthrough and ctx.dialect is not None and ctx.original is not None:
            return ctx.dialect.passthrough_request(provider, self.channel, self.call, ctx.original)
        if ctx.chat:
            return provider.chat_request(self.channel, self.call)
        return provider.embeddings_request(self.channel, self.call)

    async def _open(self, req: UpstreamRequest) -> forward.UpstreamResponse:
        """The upstream's response with status 200, or the error its failure maps to."""
        policy = self.policy
        resp = await self.upstreams.transport.open(req, policy.client_timeout, policy.first_byte_guard)
        if resp.status == 200:
            return resp
        async with resp:
            error_body = await forward.read_all(resp, forward.MAX_ERROR_BODY)
        raise self.provider.error_for(resp.status, error_body, resp.headers)

    async def _fetch(self, req: UpstreamRequest) -> bytes:
        resp = await self._open(req)
        async with resp:
            return await forward.read_all(resp)

    async def _fetch_within_deadline(self, req: UpstreamRequest) -> bytes:
        # an asyncio timer costs ~10 µs: only when the total deadline can be nearer than the
        # first-byte and idle bounds the shared session already enforces
        policy = self.policy
        now = time.monotonic()
        attempt_deadline = min(self.deadline, now + policy.total_timeout)
        if not policy.custom_total and attempt_deadline - now >= policy.first_byte_timeout:
            return await self._fetch(req)
        try:
            async with asyncio.timeout_at(attempt_deadline):
                return await self._fetch(req)
        except TimeoutError:
            raise UpstreamTimeout("The upstream provider exceeded the total time limit.") from None

    # -- a whole reply ------------------------------------------------------------------------

    async def _unary(self, send: Send, extra: Headers) -> None:
        ctx, provider, call = self.ctx, self.provider, self.call
        request, asked = self._request(), time.perf_counter()
        try:
            upstream_body = await self._fetch_within_deadline(request)
        finally:
            ctx.outcome.waited_upstream(asked)
        dialect = ctx.dialect
        if self.passthrough and dialect is not None:
            out, usage = dialect.passthrough_reply(upstream_body)
        elif ctx.chat:
            out, usage = provider.chat_response(call, upstream_body)
        else:
            out, usage = provider.embeddings_response(call, upstream_body)
        outcome = ctx.outcome
        outcome.generated(usage, message_chars(out) if usage is None and ctx.chat else 0)
        outcome.responding()
        outcome.first_output(ctx.started)
        usage = usage_or_estimate(ctx)
        if dialect is not None and not self.passthrough:
            out = dialect.reply(out, ctx.request_id, ctx.model, usage, ctx.original or {})
        cost = ctx.cost(usage) / MICROS_PER_USD  # what the settlement will debit
        out = wire.with_cost(out, cost)
        headers = [*extra, (b"x-modelgo-cost", b"%.6f" % cost), outcome.overhead_header(ctx.started)]
        await send_json(send, 200, out, headers)

    # -- a stream -----------------------------------------------------------------------------

    def _stream_parts(self) -> tuple[StreamTranslator, Egress | None]:
        dialect = self.ctx.dialect
        if dialect is None:
            return self.provider.stream_translator(self.call), None
        if self.passthrough:
            return dialect.passthrough_stream()
        ctx = self.ctx
        egress = dialect.stream(
            ctx.request_id, ctx.model, estimate_prompt_tokens(self.call.body), ctx.original or {}
        )
        return self.provider.stream_translator(self.call), egress

    async def _stream(self, receive: Receive, send: Send, extra: Headers) -> None:
        ctx, outcome = self.ctx, self.ctx.outcome
        translator, egress = self._stream_parts()
        request, asked = self._request(), time.perf_counter()
        try:
            resp = await self._open(request)
        finally:
            outcome.waited_upstream(asked)
        # The upstream answered: that closes a half-open circuit now, not when a long stream ends.
        self.upstreams.health.succeeded(self.channel, ctx.model, self.admission, self.policy)
        # From here on the client has a 200 and an event stream: failures become error events.
        # an egress that frames its stream other than as SSE (Gemini's JSON array) says how
        headers = [*getattr(egress, "headers", SSE_HEADERS), *extra, outcome.overhead_header(ctx.started)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        outcome.responding()
        relay = _StreamRelay(ctx, translator, egress, send)
        if egress is not None and not self.passthrough:
            await send({"type": "http.response.body", "body": egress.feed([]), "more_body": True})
        watcher = asyncio.create_task(_watch_disconnect(receive, outcome, asyncio.current_task()))
        try:
            attempt_deadline = min(self.deadline, time.monotonic() + self.policy.total_timeout)
            async with resp:
                await relay.run(
                    resp, attempt_deadline, self.upstreams.keepalive_seconds, self.policy.idle_timeout
                )
            if translator.error is not None and outcome.status != CLIENT_CLOSED:
                self.upstreams.health.failed(
                    self.channel, ctx.model, self.admission, translator.error, self.policy
                )
        finally:
            watcher.cancel()
            # also on cancellation (client gone): bill what was generated so far
            outcome.generated(translator.usage, translator.completion_chars)


def unexpected_failure(request_id: str, channel: Channel, exc: Exception) -> UpstreamError:
    """An attempt that failed in an unforeseen way, as the upstream error it counts as. Logged by
    the exception's type only: its text or traceback could hold the channel key or the prompt."""
    log.error(
        "%s attempt on channel %s failed unexpectedly: %s", request_id, channel.name, type(exc).__name__
    )
    return UpstreamError("The request to the upstream provider failed.", code="upstream_request_failed")


class _StreamRelay:
    """Upstream SSE bytes in, the client's events out; a failure ends the stream with an error event."""

    def __init__(self, ctx: Context, translator: StreamTranslator, egress: Egress | None, send: Send) -> None:
        self.ctx = ctx
        self.translator = translator
        self.egress = egress
        self.send = send
        # keep-alive bytes the client's framing allows (a comment would break a JSON array)
        self.keepalive: bytes = getattr(egress, "keepalive", KEEPALIVE)

    async def run(
        self, resp: forward.UpstreamResponse, deadline: float, keepalive: float, idle_timeout: float
    ) -> None:
        translator = self.translator
        try:
            await self._pump(resp, deadline, keepalive, idle_timeout)
        except aiohttp.ServerTimeoutError:
            translator.error = UpstreamTimeout("The upstream provider went silent.")
        except (aiohttp.ClientError, OSError):
            translator.error = UpstreamError(
                "The upstream connection broke while streaming the response.",
                code="upstream_stream_broken",
            )
        except UpstreamTimeout as exc:
            translator.error = exc
        except (
            Exception
        ) as exc:  # anything else once the client has its 200: the stream ends with an error event
            log.warning("%s stream failed unexpectedly: %s", self.ctx.request_id, type(exc).__name__)
            translator.error = UpstreamError(
                "The upstream response could not be relayed.", code="upstream_stream_failed"
            )
        await self._end()

    async def _pump(
        self, resp: forward.UpstreamResponse, deadline: float, keepalive: float, idle_timeout: float
    ) -> None:
        translator, send = self.translator, self.send
        decoder = SSEDecoder()
        idle = 0.0
        while not translator.finished:
            if time.monotonic() >= deadline:
                raise UpstreamTimeout("The upstream provider exceeded the total time limit.")
            try:
                # readany() never consumes partially, so a timeout here loses no bytes
                async with asyncio.timeout(keepalive):
                    data = await resp.content.readany()
            except TimeoutError:
                idle += keepalive
                if idle >= idle_timeout:
                    raise UpstreamTimeout("The upstream provider went silent.") from None
                await send({"type": "http.response.body", "body": self.keepalive, "more_body": True})
                continue
            idle = 0.0
            for payload in decoder.feed(data) if data else decoder.flush():
                out = translator.feed(payload)
                if out:
                    await self._send_chunks(out)
                if translator.finished:
                    break
            if not data:
                break

    async def _send_chunks(self, out: list[bytes]) -> None:
        ctx = self.ctx
        ctx.outcome.first_output(ctx.started)
        usage = self.translator.usage
        if usage is not None and (ctx.call.client_wants_usage or ctx.dialect is not None):
            # the usage chunk (OpenAI) or the upstream's own message_delta (an Anthropic passthrough)
            cost = ctx.cost(usage) / MICROS_PER_USD
            out = [wire.with_cost(p, cost) if wire.carries_usage(p) else p for p in out]
        if self.egress is None:
            body = frame(out[0]) if len(out) == 1 else b"".join(frame(p) for p in out)
        else:
            body = self.egress.feed(out)
            if not body:
                return
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def _end(self) -> None:
        translator, outcome = self.translator, self.ctx.outcome
        error = translator.error
        if error is None and not translator.finished:
            error = translator.error = UpstreamError(
                "The upstream provider ended the stream before it was complete.",
                code="upstream_stream_truncated",
            )
        if error is not None:
            outcome.failed(error)
        outcome.generated(translator.usage, translator.completion_chars)
        if self.egress is not None:
            usage = usage_or_estimate(self.ctx)
            tail = self.egress.end(usage, error, self.ctx.cost(usage) / MICROS_PER_USD)
        else:
            tail = frame(error.to_json()) if error is not None else DONE
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})


async def _watch_disconnect(receive: Receive, outcome: Outcome, task: asyncio.Task[Any] | None) -> None:
    """A client that hangs up mid-stream cancels the relay; the pipeline then bills what was sent."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            outcome.client_closed()
            if task is not None:
                task.cancel()
            return
