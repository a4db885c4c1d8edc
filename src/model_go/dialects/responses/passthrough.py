"""Responses in, Responses out: a /v1/responses request that lands on a channel serving the
Responses API itself (OpenAI) goes upstream as the client sent it, with only the model name swapped
and max_output_tokens set to the output the balance reserved; the reply and its events come back as
the upstream sent them. Usage is read on the way (response.completed's usage); an upstream error or
response.failed is replaced by our own, and the cost joins the final event's usage."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.responses.stream import Events, failed_event
from model_go.errors import GatewayError, UpstreamError
from model_go.providers.base import Channel, Provider, UpstreamRequest
from model_go.providers.canonical import load_object, malformed
from model_go.wire.canonical import Call, Usage, as_dict, int_or

# providers whose upstream serves POST {base_url}/responses itself
NATIVE_PROVIDERS = frozenset({"openai"})
# the events that end a Responses stream: the usage comes with them
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def usage_from(value: Any) -> Usage | None:
    usage = as_dict(value)
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = as_dict(usage.get("input_tokens_details"))
    return Usage(prompt, completion, int_or(details.get("cached_tokens"), 0))


def request(provider: Provider, channel: Channel, call: Call, original: dict[str, Any]) -> UpstreamRequest:
    """The provider's URL (…/responses) and headers; the client's body with the upstream's model name
    and the output cap the balance reserved."""
    built = provider.chat_request(channel, call)
    body = {**original, "model": call.upstream_model}
    if call.output_cap is not None:
        body["max_output_tokens"] = call.output_cap
    url = built.url.removesuffix("/chat/completions") + "/responses"
    return UpstreamRequest(url=url, headers=built.headers, body=orjson.dumps(body), method=built.method)


def reply(body: bytes) -> tuple[bytes, Usage | None]:
    parsed = load_object(body)
    if parsed.get("object") != "response" or not isinstance(parsed.get("output"), list):
        raise malformed()
    if parsed.get("status") == "failed":  # its error text is the upstream's: never relayed
        raise UpstreamError("The upstream provider failed to produce a response.", code="upstream_failed")
    return body, usage_from(parsed.get("usage"))


class PassthroughStream:
    """A StreamTranslator whose output is the upstream's own events, re-framed (`event:` + `data:`).
    The terminal event is held back for the egress, which adds the cost to its usage."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None
        self.sequence = 0  # the next sequence number, should the egress add an event of its own
        self.response: dict[str, Any] = {}  # the latest Response object the upstream sent
        self.terminal: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str) or not kind.replace(".", "_").isidentifier():
            return []
        number = int_or(event.get("sequence_number"), self.sequence)
        self.sequence = number + 1
        if isinstance(event.get("response"), dict):
            self.response = event["response"]
        if kind in TERMINAL or kind == "error":
            self.finished = True
            self.usage = usage_from(self.response.get("usage")) if kind in TERMINAL else None
            if kind in ("error", "response.failed"):  # never relayed: its text is the upstream's
                self.sequence = number  # our own response.failed takes its place
                self.error = UpstreamError(
                    "The upstream provider failed while streaming the response.", code="upstream_failed"
                )
            else:
                self.terminal = event
            return []
        delta = event.get("delta")
        if isinstance(delta, str):
            self.completion_chars += len(delta)
        return [b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"]


class PassthroughEgress:
    """The events are already the upstream's: joined as they are; the terminal one with the cost in
    its usage, or our own response.failed at a failure."""

    def __init__(self, stream: PassthroughStream) -> None:
        self.stream = stream

    def feed(self, payloads: list[bytes]) -> bytes:
        return b"".join(payloads)

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        stream = self.stream
        events = Events()
        events.sequence = stream.sequence
        terminal = stream.terminal
        if error is not None or terminal is None:
            failure = error or UpstreamError("The upstream provider failed.", code="upstream_failed")
            return failed_event(events, dict(stream.response), failure)
        response = as_dict(terminal.get("response"))
        response["usage"] = {**as_dict(response.get("usage")), "cost": cost_usd}
        kind = str(terminal["type"])
        payload = orjson.dumps({**terminal, "response": response})
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"
