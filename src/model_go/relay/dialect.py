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

    def canonical(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's parsed body, validated, as a canonical chat completions body."""
        ...

    def passthrough(self, provider: str) -> bool:
        """True when this provider speaks the dialect itself: the client's body goes upstream as
        it is and the upstream's reply comes back as it is (usage still read on the way)."""
        ...

    def error_json(self, exc: GatewayError) -> bytes: ...

    def reply(self, completion: bytes, request_id: str, model: str, usage: Usage) -> bytes:
        """A canonical chat.completion as this dialect's whole reply."""
        ...

    def stream(self, request_id: str, model: str, input_tokens: int) -> Egress: ...
