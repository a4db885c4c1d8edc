"""The Gemini API dialect (`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`,
`:countTokens`, `GET /v1beta/models`, and the same under /v1): Gemini requests in, the canonical
pipeline in the middle, Gemini replies, streams and errors out. Pure: no I/O.

Unlike OpenAI's and Anthropic's, a Gemini request names its model and whether it streams in the
URL, so one GeminiGenerate is made per request, from its path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from model_go.dialects.gemini import passthrough as own
from model_go.dialects.gemini import reply as replies
from model_go.dialects.gemini.request import canonical_request, count_request
from model_go.errors import GatewayError
from model_go.providers.base import Channel, Provider, UpstreamRequest
from model_go.tokens import estimate_prompt_tokens, text_tokens
from model_go.wire.canonical import Call, Usage
from model_go.wire.openai import parse_json_object

PROVIDER = own.PROVIDER  # the channels that take a Gemini request as it is
# the paths a Gemini client calls (google-genai 1.x defaults to v1beta, 3.x to v1)
PREFIXES = ("/v1beta/models", "/v1/models")
GENERATE, STREAM, COUNT = "generateContent", "streamGenerateContent", "countTokens"
METHODS = frozenset({GENERATE, STREAM, COUNT})


@dataclass(frozen=True)
class Target:
    """What a Gemini path asks for: a model's method (`models/m:generateContent`), one model
    (`models/m`), or the list (`models`)."""

    model: str | None
    method: str | None  # None: a model or the list, read with GET
    version: str  # "v1beta" or "v1"


def target(path: str) -> Target | None:
    """The Gemini route a path names, or None when it names none."""
    for prefix in PREFIXES:
        if path == prefix:
            return Target(None, None, prefix[1:].split("/")[0])
        if path.startswith(prefix + "/"):
            rest = unquote(path[len(prefix) + 1 :])
            name, sep, method = rest.rpartition(":")
            if not sep:
                name, method = rest, ""
            if not name:
                return None
            return Target(name, method or None, prefix[1:].split("/")[0])
    return None


def query_key(query_string: bytes) -> str | None:
    """The API key of `?key=...`, Google's own way. The query string never reaches a log line."""
    if b"key=" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name == "key" and value:
            return value
    return None


def wants_sse(query_string: bytes) -> bool:
    return any(name == "alt" and value == "sse" for name, value in parse_qsl(query_string.decode("latin-1")))


def response_id(request_id: str) -> str:
    return request_id.removeprefix("req_")


@dataclass
class GeminiGenerate:
    """One generateContent or streamGenerateContent request."""

    model: str
    streaming: bool
    sse: bool  # the stream's framing: SSE frames with ?alt=sse, else one JSON array
    native: bool = False  # only Gemini channels serve the model (request.canonical_request)
    endpoint: str = "gemini"
    candidates: int = field(default=1, init=False)  # what the client asked for, read from its body

    def canonical(self, body: dict[str, Any]) -> dict[str, Any]:
        self.candidates = own.candidate_count(body)
        return canonical_request(body, self.model, self.streaming, self.native)

    def passthrough(self, provider: str) -> bool:
        return provider == PROVIDER

    def passthrough_request(
        self, provider: Provider, channel: Channel, call: Call, original: dict[str, Any]
    ) -> UpstreamRequest:
        return own.request(provider, channel, call, original)

    def passthrough_reply(self, body: bytes) -> tuple[bytes, Usage | None]:
        return own.reply(body)

    def passthrough_stream(self) -> tuple[own.PassthroughStream, own.PassthroughEgress]:
        return own.PassthroughStream(self.candidates), own.PassthroughEgress(self.sse)

    def error_json(self, exc: GatewayError) -> bytes:
        return replies.error_json(exc)

    def translated(self, original: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        return []  # what has no canonical form is refused at admission (or routed to Gemini channels)

    def reply(
        self, completion: bytes, request_id: str, model: str, usage: Usage, original: dict[str, Any]
    ) -> bytes:
        return replies.generate_content_json(completion, response_id(request_id), model, usage)

    def stream(
        self, request_id: str, model: str, input_tokens: int, original: dict[str, Any]
    ) -> replies.GenerateContentStream:
        return replies.GenerateContentStream(response_id(request_id), model, self.sse)


def count_tokens(raw: bytes, model: str) -> int:
    """Model-go's estimate of a countTokens request's input tokens."""
    body = count_request(parse_json_object(raw), model)
    tokens = estimate_prompt_tokens(body)
    if "tools" in body:
        tokens += text_tokens(len(orjson.dumps(body["tools"])))
    return tokens


def model_json(model: str, context_length: int, max_output: int) -> dict[str, Any]:
    """One entry of Gemini's models list."""
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": model,
        "inputTokenLimit": context_length,
        "outputTokenLimit": max_output,
        "supportedGenerationMethods": [GENERATE, STREAM, COUNT],
    }
