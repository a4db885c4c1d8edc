"""The client-facing wire format of a relay route. The pipeline works in the canonical (OpenAI chat)
format; a dialect converts the request in and the reply, the stream and the errors out. OpenAI's own
routes have no dialect: their bytes pass through untouched."""

from __future__ import annotations

from typing import Any, Protocol

from model_go.errors import GatewayError
from model_go.providers.base import Usage


class Egress(Protocol):
    """Canonical stream chunks in, the dialect's stream bytes out."""

    def feed(self, payloads: list[bytes]) -> bytes: ...

    def end(self, usage: Usage, error: GatewayError | None) -> bytes: ...


class Dialect(Protocol):
    endpoint: str  # the usage row's endpoint name

    def canonical(self, raw: bytes) -> dict[str, Any]:
        """The request body, validated, as a canonical chat completions body."""
        ...

    def error_json(self, exc: GatewayError) -> bytes: ...

    def reply(self, completion: bytes, request_id: str, model: str, usage: Usage) -> bytes:
        """A canonical chat.completion as this dialect's whole reply."""
        ...

    def stream(self, request_id: str, model: str, input_tokens: int) -> Egress: ...
