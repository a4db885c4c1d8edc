"""Anthropic in, Anthropic out: a /v1/messages request that lands on an Anthropic channel goes
upstream as the client sent it (only the model name swapped), and the reply comes back as the
upstream sent it, so thinking signatures, cache_control marks and citations survive the trip.
Usage is read on the way; an upstream error event is replaced by our own."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.anthropic.reply import error_event
from model_go.errors import GatewayError
from model_go.providers import anthropic
from model_go.providers.base import Channel, Provider, UpstreamRequest
from model_go.providers.canonical import load_object, malformed
from model_go.wire.canonical import Call, Usage, as_dict

PROVIDER = "anthropic"


def request(provider: Provider, channel: Channel, call: Call, original: dict[str, Any]) -> UpstreamRequest:
    """The URL and headers (version, beta, key) as the translator builds them; the client's body with
    the upstream's model name and the output cap the balance reserved."""
    built = provider.chat_request(channel, call)
    body = {**original, "model": call.upstream_model}
    if call.output_cap is not None:
        body["max_tokens"] = call.output_cap
    return UpstreamRequest(url=built.url, headers=built.headers, body=orjson.dumps(body), method=built.method)


def reply(body: bytes) -> tuple[bytes, Usage | None]:
    parsed = load_object(body)
    if parsed.get("type") != "message" or not isinstance(parsed.get("content"), list):
        raise malformed()
    return body, anthropic.usage_from(parsed.get("usage"))


class PassthroughStream:
    """A StreamTranslator whose output is the upstream's own events, re-framed (`event:` + `data:`)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None
        self._raw_usage: dict[str, Any] = {}

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str) or not kind.isidentifier():
            return []
        if kind == "error":  # never relayed: its text is the upstream's
            self.error = anthropic.stream_error(event.get("error"))
            self.finished = True
            return []
        if kind == "message_start":
            self._usage(as_dict(as_dict(event.get("message")).get("usage")))
        elif kind == "message_delta":
            self._usage(as_dict(event.get("usage")))
        elif kind == "content_block_delta":
            delta = as_dict(event.get("delta"))
            for field in ("text", "partial_json", "thinking"):
                value = delta.get(field)
                if isinstance(value, str):
                    self.completion_chars += len(value)
        elif kind == "message_stop":
            self.finished = True
        return [b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"]

    def _usage(self, usage: dict[str, Any]) -> None:
        # message_delta counts are cumulative: they replace what message_start said
        self._raw_usage.update({k: v for k, v in usage.items() if v is not None})
        self.usage = anthropic.usage_from(self._raw_usage)


class PassthroughEgress:
    """The events are already Anthropic's: joined as they are; our own error event at a failure."""

    def feed(self, payloads: list[bytes]) -> bytes:
        return b"".join(payloads)

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        # the upstream's own message_delta carried the usage; the relay added the cost to it
        return error_event(error) if error is not None else b""
