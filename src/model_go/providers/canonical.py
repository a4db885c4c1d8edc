"""Pieces shared by translators for non-OpenAI upstreams: reading the canonical (OpenAI) request,
and building canonical responses, stream chunks and usage."""

from __future__ import annotations

import time
from typing import Any

import orjson

from model_go.errors import InvalidRequest, UpstreamError
from model_go.wire.canonical import Usage

FINISH_STOP = "stop"


def malformed() -> UpstreamError:
    return UpstreamError("The upstream provider sent a malformed response.")


def load_object(body: bytes) -> dict[str, Any]:
    """The upstream's JSON object, or an error that says nothing about its content."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed() from exc
    if not isinstance(parsed, dict):
        raise malformed()
    return parsed


# -- reading the canonical request ---------------------------------------------------------------


def max_output_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def stop_sequences(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")


def number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{name}' must be a number.", param=name)
    return value


def content_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """A message's content as a list of parts (a plain string becomes one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise InvalidRequest(f"'{param}' must be a string or an array of content parts.", param=param)


def text_only(content: Any, param: str) -> str:
    """Text of a message that may hold only text (system prompts, tool results for some APIs)."""
    texts = []
    for index, part in enumerate(content_parts(content, param)):
        if part.get("type") not in ("text", "input_text") or not isinstance(part.get("text"), str):
            raise InvalidRequest(f"'{param}[{index}]' must be a text part here.", param=f"{param}[{index}]")
        texts.append(part["text"])
    return "\n".join(texts)


def part_text(part: dict[str, Any], param: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{param}.text' must be a string.", param=f"{param}.text")
    return text


def image_url(part: dict[str, Any], param: str) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"'{param}.image_url.url' must be a string.", param=f"{param}.image_url")
    return url


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL; only base64 data URLs are accepted."""
    header, sep, data = url.partition(",")
    meta = header[5:].split(";")
    if not sep or "base64" not in meta[1:] or not meta[0] or "/" not in meta[0]:
        raise InvalidRequest(
            f"'{param}' must be an http(s) URL or a base64 data URL (data:<type>;base64,...).", param=param
        )
    if not data:
        raise InvalidRequest(f"'{param}' holds no data.", param=param)
    return meta[0].lower(), data


def is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def tool_arguments(arguments: Any, param: str) -> dict[str, Any]:
    """An assistant tool call's `arguments` string, parsed (both upstreams want an object)."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object encoded as a string.", param=param)
    return parsed


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `function` objects of `tools`, checked: each has a name."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    result = []
    for index, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
        ):
            raise InvalidRequest(
                f"'tools[{index}]' must be a function tool for this model.", param=f"tools[{index}]"
            )
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequest(f"'tools[{index}].function.name' is required.", param=f"tools[{index}]")
        result.append(fn)
    return result


def tool_choice(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """(mode, function name): mode is auto, none, required or function; None when not given."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return str(choice), None
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return "function", fn["name"]
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or a function choice.", param="tool_choice"
    )


# -- building canonical responses ----------------------------------------------------------------


def usage_json(usage: Usage, reasoning_tokens: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    if reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def tool_call_json(call_id: str, name: str, arguments: str, index: int | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if index is not None:
        call = {"index": index, **call}
    return call


def message_json(text: str, reasoning: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    message["refusal"] = None
    return message


def completion_json(
    completion_id: str, model: str, choices: list[dict[str, Any]], usage: dict[str, Any] | None
) -> bytes:
    out: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out)


class ChunkWriter:
    """Builds `chat.completion.chunk` payloads that share one id, model and creation time."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id = completion_id
        self.model = model
        self.created = int(time.time())

    def _base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def delta(self, delta: dict[str, Any], index: int = 0, finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._base(), "choices": [choice]})

    def usage(self, usage: dict[str, Any]) -> bytes:
        return orjson.dumps({**self._base(), "choices": [], "usage": usage})


def delta_chars(delta: dict[str, Any]) -> int:
    """Generated characters in one delta (for the estimate when no usage arrives)."""
    total = 0
    for field in ("content", "reasoning_content"):
        value = delta.get(field)
        if isinstance(value, str):
            total += len(value)
    for call in delta.get("tool_calls") or ():
        fn = call.get("function") or {}
        total += len(fn.get("arguments") or "") + len(fn.get("name") or "")
    return total
