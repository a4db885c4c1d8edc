"""`model-go channel test NAME`: one tiny real request (max_tokens 1) through a channel's provider,
outside the server: no billing, no usage row, no health change. Reports status and latency only;
the upstream's body is never shown (it can echo the channel key)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from model_go.errors import GatewayError
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.relay import forward
from model_go.relay.attempt import unexpected_failure
from model_go.relay.demo_upstream import LocalTransport
from model_go.wire.canonical import Call

PROBE_PROMPT = "ping"


@dataclass(frozen=True)
class CheckResult:
    model: str
    ok: bool
    status: int | None  # the upstream's HTTP status, when it answered
    latency_ms: int
    error: GatewayError | None = None


def probe_call(channel: Channel, model: str) -> Call:
    body = {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}], "max_tokens": 1}
    return Call(body=body, raw=orjson.dumps(body), model=model, upstream_model=channel.upstream_model(model))


async def check(channel: Channel, model: str, connect_timeout: float, read_timeout: float) -> CheckResult:
    provider = REGISTRY[channel.provider]
    call = probe_call(channel, model)
    started = time.perf_counter()
    status: int | None = None
    try:
        session = forward.make_session(connect_timeout, read_timeout)
        async with session:
            transport = forward.Transport(session, LocalTransport())
            resp = await transport.open(provider.chat_request(channel, call))
            async with resp:
                status = resp.status
                body = await forward.read_all(resp, None if status == 200 else forward.MAX_ERROR_BODY)
            if status != 200:
                raise provider.error_for(status, body, resp.headers)
            provider.chat_response(call, body)  # a 200 the translator cannot read is a failure too
    except GatewayError as exc:  # forward maps timeouts and broken connections to these too
        return CheckResult(model, False, status, _ms(started), exc)
    except Exception as exc:  # e.g. a stored key the HTTP client refuses to put in a header
        error = unexpected_failure("channel test", channel, exc)
        return CheckResult(model, False, status, _ms(started), error)
    return CheckResult(model, True, status, _ms(started))


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
