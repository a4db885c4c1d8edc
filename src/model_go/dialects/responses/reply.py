"""Canonical (OpenAI chat) replies as Responses API objects: a whole Response, its usage, and errors
in OpenAI's shape. Pure: no I/O (the streamed events are stream.py)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from model_go.dialects.canonical import text_of
from model_go.errors import GatewayError
from model_go.wire.canonical import Usage, as_dict, int_or

# why a reply stopped early, as a Response's incomplete_details.reason
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# a stream's failure as Response.error.code (the SDK's own list)
FAILURE_CODES = {429: "rate_limit_exceeded"}


def error_json(exc: GatewayError) -> bytes:
    return exc.to_json()


def usage_json(usage: Usage, reasoning_tokens: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def skeleton(response_id: str, model: str, echo: dict[str, Any], status: str) -> dict[str, Any]:
    """A Response object without output or usage yet: the request's settings repeated."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **echo,
    }


def finish(response: dict[str, Any], finish_reason: str | None) -> None:
    """Status and incomplete_details from the canonical finish reason."""
    reason = INCOMPLETE.get(str(finish_reason))
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None


def failure(response: dict[str, Any], exc: GatewayError) -> None:
    response["status"] = "failed"
    response["error"] = {"code": FAILURE_CODES.get(exc.status, "server_error"), "message": exc.message}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _output(message: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    reasoning = text_of(message.get("reasoning_content") or message.get("reasoning"))
    if reasoning:
        items.append(reasoning_item(f"rs_{prefix}_0", reasoning))
    refusal = text_of(message.get("refusal"))
    text = text_of(message.get("content"))
    if refusal and not text:
        content = [{"type": "refusal", "refusal": refusal}]
        items.append({**message_item(f"msg_{prefix}_0", ""), "content": content})
    elif text:
        items.append(message_item(f"msg_{prefix}_0", text))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = as_dict(as_dict(call).get("function"))
        arguments = function.get("arguments")
        items.append(
            call_item(
                f"fc_{prefix}_{index}",
                str(as_dict(call).get("id") or f"call_{prefix}_{index}"),
                str(function.get("name") or ""),
                arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode(),
            )
        )
    return items


def response_json(
    completion: bytes, response_id: str, model: str, usage: Usage, echo: dict[str, Any]
) -> bytes:
    """A canonical chat.completion as a Response (its first choice)."""
    parsed = as_dict(orjson.loads(completion))
    choices = parsed.get("choices")
    choice = as_dict(choices[0]) if isinstance(choices, list) and choices else {}
    response = skeleton(response_id, model, echo, "completed")
    response["output"] = _output(as_dict(choice.get("message")), response_id.removeprefix("resp_"))
    finish(response, choice.get("finish_reason"))
    details = as_dict(as_dict(parsed.get("usage")).get("completion_tokens_details"))
    response["usage"] = usage_json(usage, int_or(details.get("reasoning_tokens"), 0))
    return orjson.dumps(response)
