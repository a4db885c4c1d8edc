"""Inbound dialects: the client-facing wire format of a relay route other than OpenAI's own.

The pipeline works in the canonical (OpenAI chat) format; a dialect converts the request in and the
reply, the stream and the errors out. OpenAI's own routes have no dialect: their bytes pass through
untouched. One package per dialect (anthropic/, responses/), each pure: no I/O, no settings.
"""

from __future__ import annotations

from typing import Any, Protocol

from model_go.errors import GatewayError
from model_go.providers.base import Channel, Provider, StreamTranslator, UpstreamRequest
from model_go.wire.canonical import Call, Usage


class Egress(Protocol):
    """Canonical stream chunks in, the dialect's stream bytes out."""

    def feed(self, payloads: list[bytes]) -> bytes: ...

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        """The stream's last bytes: its usage (with the request's cost), or the error."""
        ...


class Dialect(Protocol):
    endpoint: str  # the usage row's endpoint name

    def canonical(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's parsed body, validated, as a canonical chat completions body."""
        ...

    def passthrough(self, provider: str) -> bool:
        """True when this provider speaks the dialect itself: the client's body goes upstream as
        it is and the upstream's reply comes back as it is (usage still read on the way)."""
        ...

    def translated(self, original: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        """Before the request goes to a channel that does not speak the dialect (through the canonical
        format): raises when the request needs what only such a channel serves; else the reply's
        extra headers (e.g. the hosted tools left out)."""
        ...

    def passthrough_request(
        self, provider: Provider, channel: Channel, call: Call, original: dict[str, Any]
    ) -> UpstreamRequest:
        """The upstream request of a passthrough: the provider's URL and headers, the client's body."""
        ...

    def passthrough_reply(self, body: bytes) -> tuple[bytes, Usage | None]:
        """The upstream's own reply, checked, and the usage it reported."""
        ...

    def passthrough_stream(self) -> tuple[StreamTranslator, Egress]:
        """Reads usage from the upstream's own events and passes them through."""
        ...

    def error_json(self, exc: GatewayError) -> bytes: ...

    def reply(
        self, completion: bytes, request_id: str, model: str, usage: Usage, original: dict[str, Any]
    ) -> bytes:
        """A canonical chat.completion as this dialect's whole reply (`original`: the client's body)."""
        ...

    def stream(self, request_id: str, model: str, input_tokens: int, original: dict[str, Any]) -> Egress: ...
