"""Canonical (OpenAI chat) replies in Anthropic's Messages format: a whole Message, the streamed
event sequence (message_start, ping, content_block_start / _delta / _stop, message_delta,
message_stop, or an `error` event), and errors in Anthropic's shape. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.errors import GatewayError
from model_go.wire.canonical import Usage, as_dict

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's error types by HTTP status (docs.anthropic.com/en/api/errors); statuses stay ours
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_object(exc: GatewayError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(exc.status, "api_error"), "message": exc.message},
    }


def error_json(exc: GatewayError) -> bytes:
    return orjson.dumps(error_object(exc))


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def error_event(exc: GatewayError) -> bytes:
    return b"event: error\ndata: " + error_json(exc) + b"\n\n"


def usage_json(usage: Usage) -> dict[str, int]:
    """Anthropic counts cache reads and writes apart from input tokens; canonical prompt tokens
    include both."""
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def text_of(value: Any) -> str:
    """A message's content as text: a string, or the text of its parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # some vendors answer with content parts
        return "".join(
            p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content")) or text_of(message.get("refusal"))
    if text:
        blocks.append({"type": "text", "text": text})
    for index, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict):
            continue
        function = as_dict(call.get("function"))
        blocks.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{index}"),
                "name": str(function.get("name") or ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    return blocks


def message_json(completion: bytes, message_id: str, model: str, usage: Usage) -> bytes:
    """A canonical chat.completion as an Anthropic Message (the first choice)."""
    parsed = orjson.loads(completion)
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    choice = as_dict(choices[0]) if isinstance(choices, list) and choices else {}
    message = as_dict(choice.get("message"))
    content = _content(message)
    stop = STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn")
    if stop == "end_turn" and any(b["type"] == "tool_use" for b in content):
        stop = "tool_use"  # some vendors say "stop" even when the model called a tool
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage_json(usage),
        }
    )


class MessageStream:
    """Canonical `chat.completion.chunk` payloads in, Anthropic stream events out (first choice)."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self.id = message_id
        self.model = model
        self.input_tokens = input_tokens  # an estimate: the real count comes in message_delta
        self.started = False
        self.index = -1
        self.open_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> content block index
        self.stop_reason: str | None = None

    def feed(self, payloads: list[bytes]) -> bytes:
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        for payload in payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in (chunk.get("choices") or ()) if isinstance(chunk, dict) else ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    self._delta(delta, out)
                finish = choice.get("finish_reason")
                if finish:
                    self.stop_reason = STOP_REASONS.get(str(finish), "end_turn")
        return b"".join(out)

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        """The stream's last events: message_delta + message_stop, or an error event."""
        if error is not None:
            return error_event(error)
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        self._close(out)
        stop = self.stop_reason or "end_turn"
        if stop == "end_turn" and self.tool_blocks:
            stop = "tool_use"
        out.append(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {**usage_json(usage), "cost": cost_usd},
                },
            )
        )
        out.append(event("message_stop", {}))
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        out.append(event("message_start", {"message": message}))
        out.append(event("ping", {}))

    def _open(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        self.index += 1
        self.open_kind = block["type"]
        out.append(event("content_block_start", {"index": self.index, "content_block": block}))
        return self.index

    def _close(self, out: list[bytes]) -> None:
        if self.open_kind is not None:
            out.append(event("content_block_stop", {"index": self.index}))
            self.open_kind = None

    def _block_delta(self, index: int, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(event("content_block_delta", {"index": index, "delta": delta}))

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            if self.open_kind != "thinking":
                self._open({"type": "thinking", "thinking": "", "signature": ""}, out)
            self._block_delta(self.index, {"type": "thinking_delta", "thinking": reasoning}, out)
        text = text_of(delta.get("content")) or text_of(delta.get("refusal"))
        if text:
            if self.open_kind != "text":
                self._open({"type": "text", "text": ""}, out)
            self._block_delta(self.index, {"type": "text_delta", "text": text}, out)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_delta(call, out)

    def _tool_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0) if isinstance(call.get("index"), int) else 0
        function = as_dict(call.get("function"))
        if position not in self.tool_blocks:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{self.id}_{position}"),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            self.tool_blocks[position] = self._open(block, out)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            self._block_delta(self.tool_blocks[position], delta, out)
