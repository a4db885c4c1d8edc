"""Inbound Anthropic Messages requests: validated and turned into the canonical (OpenAI chat) body
that the pipeline and every provider understand. Pure: no I/O, no settings."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.canonical import copy_numbers, copy_stream
from model_go.errors import InvalidRequest
from model_go.wire.redirects import ANTHROPIC, refuse_upstream_redirection

# Anthropic features that only an Anthropic upstream could honour and that change what the model
# does (or make the upstream fetch a URL): refused rather than silently dropped.
UNSUPPORTED_FIELDS = frozenset({"mcp_servers", "container"})
# Anthropic's own sampling knobs, forwarded as extra fields (the Anthropic translator reads them).
PASSTHROUGH_FIELDS = ("top_k", "thinking")


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _int_field(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"'{name}' must be an integer of at least 1.", name)
    return value


def _text_of(block: dict[str, Any], param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"'{param}.text' must be a string.", f"{param}.text")
    return text


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise _bad(f"'{param}' must be a string or an array of content blocks.", param)
    return content


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"'{param}.source' must be an object.", f"{param}.source")
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str) and isinstance(source.get("media_type"), str):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]  # passed on as a URL: model-go never fetches it
    else:
        raise _bad(f"'{param}.source' must be a base64 or url image source.", f"{param}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source, dict) and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "base64" and isinstance(source, dict) and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        data_url = f"data:{media_type};base64,{source['data']}"
        return {"type": "file", "file": {"filename": "document", "file_data": data_url}}
    raise _bad(f"'{param}.source' must be a base64 or text document source.", f"{param}.source")


def _user_part(block: dict[str, Any], param: str) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        text = _text_of(block, param)
        return {"type": "text", "text": text} if text else None
    if kind == "image":
        return _image_part(block, param)
    if kind == "document":
        return _document_part(block, param)
    raise _bad(f"'{param}': content blocks of type {kind!r} are not supported here.", param)


def _tool_message(block: dict[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result block: the tool message, plus any images it held (sent after it as user parts,
    since tool messages carry text only)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"'{param}.tool_use_id' must be a string.", f"{param}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for index, inner in enumerate(_blocks(content, f"{param}.content") if content is not None else []):
        here = f"{param}.content[{index}]"
        if inner.get("type") == "text":
            texts.append(_text_of(inner, here))
        elif inner.get("type") == "image":
            images.append(_image_part(inner, here))
        else:
            raise _bad(f"'{here}': tool results may hold text and images only.", here)
    text = "\n".join(texts)
    if block.get("is_error") is True and not text.startswith("Error"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user_messages(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, param)):
        here = f"{param}[{index}]"
        if block.get("type") == "tool_result":
            message, images = _tool_message(block, here)
            tools.append(message)
            parts.extend(images)
        else:
            part = _user_part(block, here)
            if part is not None:
                parts.append(part)
    # Anthropic puts tool results first in the turn; OpenAI wants them right after the tool calls
    if not parts:
        return tools
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tools, {"role": "user", "content": parts[0]["text"]}]
    return [*tools, {"role": "user", "content": parts}]


def _assistant_message(content: Any, param: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, param)):
        here = f"{param}[{index}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_of(block, here))
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
                raise _bad(f"'{here}' needs an id, a name and an input object.", here)
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed by one Anthropic deployment; meaningless to any other upstream
        else:
            raise _bad(f"'{here}': content blocks of type {kind!r} are not supported here.", here)
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant") or not isinstance(message, dict):
            raise _bad(f"'{param}.role' must be 'user' or 'assistant'.", f"{param}.role")
        content = message.get("content")
        if role == "user":
            out.extend(_user_messages(content, f"{param}.content"))
        else:
            converted = _assistant_message(content, f"{param}.content")
            if converted is not None:
                out.append(converted)
    if not out:
        raise _bad("'messages' must hold at least one non-empty message.", "messages")
    return out


def _system(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"role": "system", "content": value} if value else None
    if not isinstance(value, list):
        raise _bad("'system' must be a string or an array of text blocks.", "system")
    texts = []
    for index, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"'system[{index}]' must be a text block.", f"system[{index}]")
        texts.append(_text_of(block, f"system[{index}]"))
    return {"role": "system", "content": "\n\n".join(texts)} if texts else None


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")
    out = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            raise _bad(
                f"'{param}': only client tools (name, description, input_schema) are supported.", param
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise _bad(f"'{param}.name' is required.", f"{param}.name")
        if not isinstance(schema, dict):
            raise _bad(f"'{param}.input_schema' must be a JSON schema object.", f"{param}.input_schema")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(body: dict[str, Any], out: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in ("auto", "any", "none"):
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise _bad("'tool_choice.type' must be auto, any, tool or none.", "tool_choice")
    if "tools" not in out:
        out.pop("tool_choice")  # OpenAI refuses a tool_choice without tools; Anthropic ignores it
    elif isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    copy_numbers(body, out)
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'stop_sequences' must be an array of strings.", "stop_sequences")
        if stops:
            out["stop"] = stops
    for name in PASSTHROUGH_FIELDS:
        if body.get(name) is not None:
            out[name] = body[name]


def _refuse(body: dict[str, Any]) -> None:
    for name in body:
        if name in UNSUPPORTED_FIELDS:
            raise _bad(f"'{name}' is not supported by model-go.", name)
    # the client's own body goes upstream on an Anthropic channel: it is what gets filtered
    refuse_upstream_redirection(body, ANTHROPIC)


def canonical_request(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request body as the equivalent OpenAI chat completions body."""
    _refuse(body)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required.", param="model", code="missing_model")
    max_tokens = _int_field(body, "max_tokens", required=True)
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    system = _system(body.get("system"))
    out["messages"] = [system, *_messages(body)] if system else _messages(body)
    copy_stream(body, out)
    tools = _tools(body)
    if tools:
        out["tools"] = tools
    _tool_choice(body, out)
    _sampling(body, out)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        out["user"] = metadata["user_id"]
    return out


def count_request(body: dict[str, Any]) -> dict[str, Any]:
    """A count_tokens body (no max_tokens) in canonical form, for the estimate."""
    return canonical_request({**body, "max_tokens": 1, "stream": False})
