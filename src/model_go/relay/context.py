"""What one client request carries through the relay, and what happened to it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from model_go.billing.pricing import Price
from model_go.dialects import Dialect
from model_go.errors import GatewayError
from model_go.providers.base import Channel
from model_go.relay.snapshot import KeyInfo
from model_go.tokens import estimate_prompt_tokens, text_tokens
from model_go.wire.canonical import Call, Usage

CLIENT_CLOSED = 499


@dataclass
class Outcome:
    """What happened to one request; turned into exactly one usage row and at most one debit.
    Changed only through the methods below, each named after the event it records."""

    status: int = 200
    error_code: str | None = None
    usage: Usage | None = None
    completion_chars: int = 0
    delivered: bool = False  # some generated output reached (or was produced for) the client
    channel_id: int | None = None
    attempts: int = 0
    ttft_ms: int | None = None
    cost_micros: int = 0  # what the settlement debited
    upstream_seconds: float = 0.0  # spent waiting on upstreams, every attempt's
    overhead_seconds: float | None = None  # inside model-go until the response started
    tokens: int = 0  # prompt and completion tokens, as billed (the tokens-per-minute correction)

    def attempting(self, channel_id: int) -> None:
        self.attempts += 1
        self.channel_id = channel_id

    def waited_upstream(self, since: float) -> None:
        """An upstream call that began at `since` (perf_counter) returned or failed."""
        self.upstream_seconds += time.perf_counter() - since

    def overhead_header(self, started: float) -> tuple[bytes, bytes]:
        """The response starts now: x-modelgo-overhead-ms, the time spent inside model-go so far
        without the upstream's."""
        return (b"x-modelgo-overhead-ms", b"%.2f" % (self.overhead(started) * 1000))

    def overhead(self, started: float) -> float:
        if self.overhead_seconds is None:
            self.overhead_seconds = max(time.perf_counter() - started - self.upstream_seconds, 0.0)
        return self.overhead_seconds

    def responding(self) -> None:
        """The client is getting a 200: no fail-over from here on."""
        self.delivered = True

    def first_output(self, started: float) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - started) * 1000)

    def generated(self, usage: Usage | None, completion_chars: int) -> None:
        """What the upstream produced so far: its reported usage and the characters we forwarded."""
        self.usage = usage
        self.completion_chars = completion_chars

    def billed(self, cost_micros: int, tokens: int) -> None:
        self.cost_micros = cost_micros
        self.tokens = tokens

    def failed(self, error: GatewayError) -> None:
        self.status, self.error_code = error.status, error.code

    def client_closed(self) -> None:
        self.status, self.error_code = CLIENT_CLOSED, "client_closed"

    def shut_down(self) -> None:
        self.status, self.error_code = 503, "server_shutdown"


@dataclass(frozen=True)
class Once:
    """A request's Idempotency-Key and body, as keyed hashes (relay/idempotency.py)."""

    key_hash: str
    body_hash: str


@dataclass
class Context:
    """One client request: who sent it, the canonical call, its price, and its outcome."""

    request_id: str
    started: float
    endpoint: str
    key: KeyInfo
    price: Price
    channels: list[Channel]  # the model's channels in the snapshot the request started with
    call: Call
    client_ip: str | None
    user_agent: str | None
    chat: bool = True
    dialect: Dialect | None = None
    original: dict[str, Any] | None = None  # the client's body, when a dialect converted it
    original_size: int = 0  # its size in bytes as the client sent it
    requested_output: int | None = None  # the client's max_completion_tokens / max_tokens
    choices: int = 1
    images: int = 0  # image parts in the prompt (a price may charge per image)
    idempotency: Once | None = None
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def model(self) -> str:
        return self.call.model

    def cost(self, usage: Usage) -> int:
        """What this request costs with `usage`: the same figure in the reply, the ledger and the row."""
        return self.price.cost(usage, self.images)


def usage_or_estimate(ctx: Context) -> Usage:
    """The upstream's usage, or model-go's estimate when it reported none."""
    if ctx.outcome.usage is not None:
        return ctx.outcome.usage
    return Usage(
        prompt_tokens=estimate_prompt_tokens(ctx.call.body),
        completion_tokens=text_tokens(ctx.outcome.completion_chars),
    )


def message_chars(body: bytes) -> int:
    try:
        parsed = orjson.loads(body)
        return sum(len(c["message"].get("content") or "") for c in parsed.get("choices", ()))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return 0
