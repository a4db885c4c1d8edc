"""OpenAI and every OpenAI-compatible upstream: bytes pass through, usage is read on the way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from model_go.errors import GatewayError, UpstreamError
from model_go.providers import errors
from model_go.providers.base import Channel, UpstreamRequest
from model_go.wire.canonical import Call, Usage


def usage_from(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    prompt = obj.get("prompt_tokens")
    completion = obj.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = obj.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(prompt, completion, cached if isinstance(cached, int) else 0)


def _content_chars(choice: Any) -> int:
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict):
        return 0
    total = 0
    for field in ("content", "reasoning_content", "refusal"):
        value = delta.get(field)
        if isinstance(value, str):
            total += len(value)
    for call in delta.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            total += len(fn.get("arguments") or "") + len(fn.get("name") or "")
    return total


def _checked_usage(body: bytes, required: str) -> Usage | None:
    """The usage of a whole reply, after checking it is a JSON object carrying `required`."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The upstream provider sent a malformed response.") from exc
    if not isinstance(parsed, dict) or required not in parsed:
        raise UpstreamError("The upstream provider sent a malformed response.")
    return usage_from(parsed.get("usage"))


class OpenAIStream:
    """Reads usage and counts generated characters; strips the usage chunk we asked for ourselves."""

    def __init__(self, call: Call) -> None:
        self.client_wants_usage = call.client_wants_usage
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if data == b"[DONE]":
            self.finished = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [data]
        if not isinstance(chunk, dict):
            return [data]
        if "error" in chunk and "choices" not in chunk:
            self.error = UpstreamError("The upstream provider failed while streaming the response.")
            self.finished = True
            return []
        choices = chunk.get("choices") or ()
        for choice in choices:
            self.completion_chars += _content_chars(choice)
        usage = usage_from(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
            if not self.client_wants_usage:
                if not choices:
                    return []
                chunk["usage"] = None
                return [orjson.dumps(chunk)]
        return [data]


CAP_FIELDS = ("max_completion_tokens", "max_tokens")


def cap_field(channel: Channel) -> str:
    """The field a channel is sent the output cap in, when the client set neither: the channel's
    `output_cap_field` setting, else OpenAI's current name on OpenAI's own API (its reasoning models
    refuse the legacy one) and the legacy `max_tokens` elsewhere (every compatible server knows it)."""
    configured = channel.config.get("output_cap_field")
    if configured in CAP_FIELDS:
        return str(configured)
    return "max_completion_tokens" if "api.openai.com" in channel.base_url else "max_tokens"


def _cap_changes(call: Call, default_field: str) -> dict[str, int]:
    """The cap fields to set so the upstream may produce at most `call.output_cap` tokens a choice:
    the client's own field(s) lowered to it, or the channel's field added when the client set none."""
    cap = call.output_cap
    if cap is None:
        return {}
    present = [name for name in CAP_FIELDS if call.body.get(name) is not None]
    if not present:
        return {default_field: cap}
    return {name: cap for name in present if call.body[name] != cap}


def _append_field(raw: bytes, name: str, value: int) -> bytes:
    """`raw` (a JSON object without `name`, with at least one field: the model) plus `name`, without
    re-encoding the client's bytes."""
    end = raw.rstrip().rfind(b"}")
    return b'%s,"%s":%d}' % (raw[:end], name.encode(), value)


class OpenAIProvider:
    name = "openai"
    local = False

    def _headers(self, channel: Channel) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if channel.api_key:
            headers["Authorization"] = f"Bearer {channel.api_key}"
        return headers

    def _url(self, channel: Channel, path: str) -> str:
        return channel.base_url.rstrip("/") + path

    def _body(self, call: Call, *, ask_usage: bool, cap_field: str = "max_tokens") -> bytes:
        """The client's bytes when nothing needs changing (the common case), else the body rebuilt:
        the upstream's model name, the usage a stream must report, and the output cap."""
        caps = _cap_changes(call, cap_field)
        if call.upstream_model == call.model and not ask_usage:
            if not caps:
                return call.raw  # nothing to change: forward the client's bytes untouched
            if len(caps) == 1 and cap_field in caps and cap_field not in call.body:
                return _append_field(call.raw, cap_field, caps[cap_field])
        body = dict(call.body)
        body["model"] = call.upstream_model
        body.update(caps)
        if ask_usage:
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return orjson.dumps(body)

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        ask_usage = call.stream and not call.client_wants_usage
        return UpstreamRequest(
            url=self._url(channel, "/chat/completions"),
            headers=self._headers(channel),
            body=self._body(call, ask_usage=ask_usage, cap_field=cap_field(channel)),
        )

    def chat_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        return body, _checked_usage(body, "choices")

    def stream_translator(self, call: Call) -> OpenAIStream:
        return OpenAIStream(call)

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        return UpstreamRequest(
            url=self._url(channel, "/embeddings"),
            headers=self._headers(channel),
            body=self._body(call, ask_usage=False),
        )

    def embeddings_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        return body, _checked_usage(body, "data")

    def error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.classify(status, body, headers)
