"""Gemini in, Gemini out: a generateContent request that lands on a Gemini channel goes upstream as
the client sent it (the upstream model in the URL, the reserved output cap in
generationConfig.maxOutputTokens), and the reply comes back as the upstream sent it, so thought
signatures, grounding and safety ratings survive the trip. Usage is read from usageMetadata on the
way; an upstream error event is replaced by our own."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.gemini.reply import Framing, error_json
from model_go.errors import GatewayError, UpstreamError
from model_go.providers import gemini
from model_go.providers.base import Channel, Provider, UpstreamRequest
from model_go.providers.canonical import load_object, malformed
from model_go.providers.gemini_finish import NOT_FINISHED
from model_go.wire.canonical import Call, Usage, as_dict, as_list

PROVIDER = "gemini"


def request(provider: Provider, channel: Channel, call: Call, original: dict[str, Any]) -> UpstreamRequest:
    """The client's body with the output cap the balance reserved, to the channel's model."""
    if not isinstance(provider, gemini.GeminiProvider):
        raise UpstreamError("This channel cannot take a Gemini request as it is.")
    body = {k: v for k, v in original.items() if k != "model"}
    if call.output_cap is not None:
        body["generationConfig"] = {
            **as_dict(original.get("generationConfig")),
            "maxOutputTokens": call.output_cap,
        }
    return provider.generate_request(channel, call, body)


def usage_of(response: dict[str, Any]) -> Usage | None:
    counted = gemini.usage_from(response.get("usageMetadata"))
    return counted[0] if counted else None


def reply(body: bytes) -> tuple[bytes, Usage | None]:
    parsed = load_object(body)
    if not isinstance(parsed.get("candidates"), list) and not isinstance(parsed.get("promptFeedback"), dict):
        raise malformed()
    return body, usage_of(parsed)


class PassthroughStream:
    """A StreamTranslator whose output is the upstream's own events. The stream is complete once every
    candidate it asked for has a finish reason (Gemini sends no end marker)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None
        self._done: set[int] = set()

    def feed(self, data: bytes) -> list[bytes]:
        response = gemini.stream_event(data)
        if not isinstance(response, dict):
            if response is not None:  # never relayed: its text is the upstream's
                self.error, self.finished = response, True
            return []
        for position, candidate in enumerate(as_list(response.get("candidates"))):
            candidate = as_dict(candidate)
            for part in as_list(as_dict(candidate.get("content")).get("parts")):
                part = as_dict(part)
                if isinstance(part.get("text"), str):
                    self.completion_chars += len(part["text"])
                elif "functionCall" in part:
                    self.completion_chars += len(orjson.dumps(part["functionCall"]))
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason != NOT_FINISHED:
                index = candidate.get("index")
                self._done.add(index if isinstance(index, int) else position)
        blocked = "promptFeedback" in response and not response.get("candidates")
        if blocked or len(self._done) >= self.expected:
            # the last event's usage is the whole request's; earlier ones count the prompt only
            self.usage, self.finished = usage_of(response), True
        return [data]


class PassthroughEgress(Framing):
    """The events are already Gemini's: framed as the client asked; our own error at a failure."""

    def feed(self, payloads: list[bytes]) -> bytes:
        return b"".join(self.frame(p) for p in payloads)

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        # the upstream's own last event carried the usage; the relay added the cost to it
        tail = self.frame(error_json(error)) if error is not None else b""
        return tail + self.close()


def candidate_count(original: dict[str, Any]) -> int:
    count = as_dict(original.get("generationConfig")).get("candidateCount")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 1 else 1
