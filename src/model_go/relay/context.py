"""What one client request carries through the relay, and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from model_go.providers.base import Usage
from model_go.relay.dialect import Dialect, Egress
from model_go.relay.snapshot import KeyInfo, Price
from model_go.tokens import estimate_prompt_tokens, text_tokens

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
    chat: bool = True
    dialect: Dialect | None = None
    original: dict[str, Any] | None = None  # the client's body, when a dialect converted it
    egress: Egress | None = None
    outcome: Outcome = field(default_factory=Outcome)


def usage_or_estimate(ctx: Context) -> Usage:
    """The upstream's usage, or model-go's estimate when it reported none."""
    if ctx.outcome.usage is not None:
        return ctx.outcome.usage
    return Usage(
        prompt_tokens=estimate_prompt_tokens(ctx.body),
        completion_tokens=text_tokens(ctx.outcome.completion_chars),
    )


def message_chars(body: bytes) -> int:
    try:
        parsed = orjson.loads(body)
        return sum(len(c["message"].get("content") or "") for c in parsed.get("choices", ()))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return 0
