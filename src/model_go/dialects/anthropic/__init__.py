"""The Anthropic Messages dialect (`POST /v1/messages`): Anthropic requests in, the canonical
pipeline in the middle, Anthropic replies, events and errors out. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.anthropic import passthrough as own
from model_go.dialects.anthropic import reply as replies
from model_go.dialects.anthropic.request import canonical_request, count_request
from model_go.errors import GatewayError
from model_go.providers.base import Channel, Provider, StreamTranslator, UpstreamRequest
from model_go.tokens import estimate_prompt_tokens, text_tokens
from model_go.wire.canonical import Call, Usage
from model_go.wire.openai import parse_json_object


def message_id(request_id: str) -> str:
    """Anthropic message ids start with msg_; ours carry the request id, so logs and replies match."""
    return "msg_" + request_id.removeprefix("req_")


class AnthropicMessages:
    endpoint = "messages"

    def canonical(self, body: dict[str, Any]) -> dict[str, Any]:
        return canonical_request(body)

    def passthrough(self, provider: str) -> bool:
        return provider == own.PROVIDER

    def translated(self, original: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        return []  # every Messages feature model-go accepts has a canonical form

    def passthrough_request(
        self, provider: Provider, channel: Channel, call: Call, original: dict[str, Any]
    ) -> UpstreamRequest:
        return own.request(provider, channel, call, original)

    def passthrough_reply(self, body: bytes) -> tuple[bytes, Usage | None]:
        return own.reply(body)

    def passthrough_stream(self) -> tuple[StreamTranslator, own.PassthroughEgress]:
        return own.PassthroughStream(), own.PassthroughEgress()

    def error_json(self, exc: GatewayError) -> bytes:
        return replies.error_json(exc)

    def reply(
        self, completion: bytes, request_id: str, model: str, usage: Usage, original: dict[str, Any]
    ) -> bytes:
        return replies.message_json(completion, message_id(request_id), model, usage)

    def stream(
        self, request_id: str, model: str, input_tokens: int, original: dict[str, Any]
    ) -> replies.MessageStream:
        return replies.MessageStream(message_id(request_id), model, input_tokens)


def count_tokens(raw: bytes) -> tuple[str, int]:
    """(model, model-go's estimate of the input tokens) of a count_tokens request body."""
    body = count_request(parse_json_object(raw))
    tokens = estimate_prompt_tokens(body)
    if "tools" in body:
        tokens += text_tokens(len(orjson.dumps(body["tools"])))
    return str(body["model"]), tokens
