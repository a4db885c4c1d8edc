"""The contract every upstream translator keeps. Translators are pure: no I/O, no settings, no DB.

The canonical format inside model-go is OpenAI's chat completions wire format. A provider turns a
canonical request into an upstream HTTP request, and the upstream's reply (whole or streamed) back
into canonical bytes plus the usage it reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from model_go.errors import GatewayError
from model_go.wire.canonical import Call, Usage


@dataclass(frozen=True)
class Channel:
    """What a translator may know about a channel (the key is decrypted, never logged)."""

    id: int
    name: str
    provider: str
    base_url: str
    api_key: str | None
    models: tuple[str, ...]
    model_map: Mapping[str, str]
    priority: int
    weight: int
    config: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # keeps the key out of any traceback or log line
        return f"Channel(id={self.id}, name={self.name!r}, provider={self.provider!r})"

    def upstream_model(self, public_model: str) -> str:
        return self.model_map.get(public_model, public_model)


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    def __repr__(self) -> str:
        return f"UpstreamRequest(method={self.method!r})"


class StreamTranslator(Protocol):
    usage: Usage | None
    finished: bool
    completion_chars: int
    error: GatewayError | None

    def feed(self, data: bytes) -> list[bytes]:
        """One upstream SSE `data:` payload in, zero or more canonical chunk payloads out."""
        ...


class Provider(Protocol):
    name: str
    # True for a provider whose upstream is in-process (the demo model, reached through the relay's
    # transport like any other): its channels need no base URL. The relay never branches on it.
    local: bool

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest: ...

    def chat_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]: ...

    def stream_translator(self, call: Call) -> StreamTranslator: ...

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest: ...

    def embeddings_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]: ...

    def error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...
