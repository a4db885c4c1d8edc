"""Parsing and validating OpenAI-format request bodies: cheap checks on the fields we rely on;
everything else passes through to the upstream untouched."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.errors import InvalidRequest
from model_go.wire import redirects
from model_go.wire.canonical import ChatRequest


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    redirects.refuse_duplicate_keys(raw, body)
    return body


def _optional_int(body: dict[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"'{name}' must be an integer of at least {minimum}.", param=name)
    return value


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("You must provide a model parameter.", param="model", code="missing_model")
    return model


def validate_chat(body: dict[str, Any]) -> ChatRequest:
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"'messages[{index}]' must be an object with a string 'role'.",
                param=f"messages[{index}]",
            )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    wants_usage = bool(options and options.get("include_usage") is True)
    max_out = _optional_int(body, "max_completion_tokens", minimum=1)
    if max_out is None:
        max_out = _optional_int(body, "max_tokens", minimum=1)
    n = _optional_int(body, "n", minimum=1) or 1
    if n > 128:
        raise InvalidRequest("'n' must be at most 128.", param="n")
    redirects.refuse_upstream_redirection(body, redirects.OPENAI)
    return ChatRequest(model, stream, wants_usage, max_out, n)


def _token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def embedding_inputs_ok(value: Any) -> bool:
    """OpenAI's four forms: a string, strings, one token array, token arrays; never a mix."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, str) for v in value) or all(_token(v) for v in value):
        return True
    return all(isinstance(v, list) and v and all(_token(t) for t in v) for v in value)


def validate_embeddings(body: dict[str, Any]) -> str:
    """The model of a valid embeddings body (nothing streams, nothing is generated)."""
    model = _model(body)
    if not embedding_inputs_ok(body.get("input")):
        raise InvalidRequest(
            "'input' must be a string, an array of strings, an array of tokens (integers), or an"
            " array of token arrays.",
            param="input",
        )
    redirects.refuse_upstream_redirection(body, redirects.OPENAI)
    return model


def with_cost(body: bytes, cost_usd: float) -> bytes:
    """A reply (or a stream's usage chunk, or an `event: ...` SSE frame holding one) with its cost in
    USD as `usage.cost`, as OpenRouter reports it (`usageMetadata.cost` in Gemini's shape); a body
    without a usage object comes back unchanged."""
    if body.startswith(b"event: "):
        head, sep, data = body.partition(b"\ndata: ")
        if not sep:
            return body
        return head + sep + with_cost(data.rstrip(b"\n"), cost_usd) + b"\n\n"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict):
        return body
    usage = parsed.get("usage")
    if not isinstance(usage, dict):
        usage = parsed.get("usageMetadata")  # a Gemini reply or stream event
        if not isinstance(usage, dict):
            return body
    usage["cost"] = cost_usd
    return orjson.dumps(parsed)


# a usage object as OpenAI and Anthropic name it, and as Gemini does (whose events have spaces)
USAGE_MARKS = (b'"usage":{', b'"usage": {', b'"usageMetadata":{', b'"usageMetadata": {')


def carries_usage(payload: bytes) -> bool:
    """True when a stream chunk may hold a usage object (a byte scan: most chunks do not)."""
    return any(mark in payload for mark in USAGE_MARKS)
