"""The OpenAI Responses dialect (`POST /v1/responses`): Responses requests in, the canonical pipeline
in the middle, Response objects, events and OpenAI-shaped errors out. Pure: no I/O.

On a channel serving the Responses API itself (OpenAI) the client's body goes upstream untranslated;
on every other channel it is served through the canonical chat format, where model-go keeps no state
(store is false, previous_response_id and friends are refused) and hosted tools are dropped."""

from __future__ import annotations

from typing import Any

from model_go.dialects.responses import passthrough as own
from model_go.dialects.responses.reply import error_json, response_json
from model_go.dialects.responses.request import canonical_request, dropped_header, echo, translated_refusal
from model_go.dialects.responses.stream import ResponseStream
from model_go.errors import GatewayError
from model_go.providers.base import Channel, Provider, StreamTranslator, UpstreamRequest
from model_go.wire.canonical import Call, Usage


def response_id(request_id: str) -> str:
    """Response ids start with resp_; ours carry the request id, so logs and replies match."""
    return "resp_" + request_id.removeprefix("req_")


class OpenAIResponses:
    endpoint = "responses"

    def canonical(self, body: dict[str, Any]) -> dict[str, Any]:
        return canonical_request(body)

    def passthrough(self, provider: str) -> bool:
        return provider in own.NATIVE_PROVIDERS

    def translated(self, original: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        refusal = translated_refusal(original)
        if refusal is not None:
            raise refusal
        return dropped_header(original)

    def passthrough_request(
        self, provider: Provider, channel: Channel, call: Call, original: dict[str, Any]
    ) -> UpstreamRequest:
        return own.request(provider, channel, call, original)

    def passthrough_reply(self, body: bytes) -> tuple[bytes, Usage | None]:
        return own.reply(body)

    def passthrough_stream(self) -> tuple[StreamTranslator, own.PassthroughEgress]:
        stream = own.PassthroughStream()
        return stream, own.PassthroughEgress(stream)

    def error_json(self, exc: GatewayError) -> bytes:
        return error_json(exc)

    def reply(
        self, completion: bytes, request_id: str, model: str, usage: Usage, original: dict[str, Any]
    ) -> bytes:
        return response_json(completion, response_id(request_id), model, usage, echo(original))

    def stream(
        self, request_id: str, model: str, input_tokens: int, original: dict[str, Any]
    ) -> ResponseStream:
        return ResponseStream(response_id(request_id), model, echo(original))
