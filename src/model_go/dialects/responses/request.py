"""Inbound OpenAI Responses requests: validated and turned into the canonical (OpenAI chat) body that
the pipeline bounds and every provider understands. Pure: no I/O, no settings.

What only an upstream that keeps state or runs hosted tools can serve (previous_response_id,
conversation, stored prompts and items, web_search and the other built-in tools) is left
out of the canonical body rather than refused here: a native Responses channel takes the client's
own body. `translated_refusal` and `dropped_tools` decide, once a translated channel was chosen."""

from __future__ import annotations

from typing import Any

from model_go.dialects.canonical import copy_numbers, copy_stream
from model_go.errors import InvalidRequest
from model_go.wire.redirects import ContentPaths, refuse_upstream_redirection

# Where a Responses body holds user content (free text, schemas, the client's own metadata keys):
# not scanned for upstream-redirecting field names, as OpenAI's `messages` are not.
RESPONSES = ContentPaths(
    top=frozenset({"input", "instructions", "text", "metadata"}),
    lists=frozenset({"tools"}),
    item=frozenset({"parameters", "description", "format", "input_schema"}),
)
# State the upstream would have to keep: model-go keeps none (privacy policy).
STATEFUL_FIELDS = ("previous_response_id", "conversation", "prompt")
NO_STATE = (
    "model-go keeps no prompts or replies (see its privacy policy), so '{name}' cannot be served on"
    " this model's channel. Send the whole conversation in 'input' instead."
)
NOT_STORED = (
    "model-go keeps no prompts or replies (see its privacy policy): there is no stored response to"
    " read, delete or cancel."
)
# a background response is fetched later (GET /v1/responses/{id}): model-go keeps nothing to serve
# it from, and could not meter the tokens the upstream spends on it meanwhile
BACKGROUND = (
    "model-go keeps no prompts or replies (see its privacy policy) and bills each reply as it"
    " delivers it, so 'background' responses are not supported. Stream the response instead."
)
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{param}' must be a string.", param)
    return value


def _image(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise _bad(f"'{param}.image_url' must be an image URL or a data URL.", f"{param}.image_url")
    image: dict[str, Any] = {"url": url}  # passed on as a URL: model-go never fetches it
    if part.get("detail") in ("low", "high", "auto"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: dict[str, Any], param: str) -> dict[str, Any]:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        raise _bad(f"'{param}.file_data' must be the file's base64 data or a data URL.", f"{param}.file_data")
    if not data.startswith("data:"):
        data = "data:application/pdf;base64," + data
    name = part.get("filename")
    return {
        "type": "file",
        "file": {"filename": name if isinstance(name, str) else "file", "file_data": data},
    }


TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text"})


def _translatable(part: dict[str, Any]) -> bool:
    """False for a part only a Responses upstream can resolve: an image or file by file_id or
    file_url (stored there), or a part type the chat format has no form for."""
    kind = part.get("type")
    if kind == "input_image":
        return part.get("image_url") is not None
    if kind == "input_file":
        return part.get("file_data") is not None
    return kind in TEXT_PARTS or kind == "refusal"


def _part(part: Any, param: str) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise _bad(f"'{param}' must be a content part object.", param)
    kind = part.get("type")
    if not _translatable(part):
        return None  # a native channel takes it in the client's body; translated_refusal names it
    if kind in TEXT_PARTS:
        text = _text(part.get("text"), f"{param}.text")
        return {"type": "text", "text": text} if text else None
    if kind == "refusal":
        return {"type": "text", "text": _text(part.get("refusal"), f"{param}.refusal")}
    if kind == "input_image":
        return _image(part, param)
    return _file(part, param)


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"'{param}' must be a string or an array of content parts.", param)
    converted = (_part(part, f"{param}[{i}]") for i, part in enumerate(content))
    parts = [p for p in converted if p is not None]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any, param: str) -> str:
    """A function_call_output's output: a string, or parts whose text is joined (tool messages carry
    text only)."""
    content = _content(output, param)
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p["type"] == "text")


class _Conversation:
    """Input items in, chat messages out: a function_call joins the assistant turn before it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def message(self, item: dict[str, Any], param: str) -> None:
        role = ROLES.get(str(item.get("role")))
        if role is None:
            raise _bad(f"'{param}.role' must be user, assistant, system or developer.", f"{param}.role")
        content = _content(item.get("content"), f"{param}.content")
        if role == "assistant":
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
            self.messages.append({"role": "assistant", "content": text})
        else:
            self.messages.append({"role": role, "content": content})

    def function_call(self, item: dict[str, Any], param: str) -> None:
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
        if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
            raise _bad(f"'{param}' needs a call_id, a name and arguments (a string).", param)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant" and isinstance(last["content"], str | None):
            last.setdefault("tool_calls", []).append(call)
            last["content"] = last["content"] or None
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def function_output(self, item: dict[str, Any], param: str) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise _bad(f"'{param}.call_id' must be a string.", f"{param}.call_id")
        text = _output_text(item.get("output", ""), f"{param}.output")
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    conversation = _Conversation()
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("'input' must be a string or an array of input items.", "input")
    for index, item in enumerate(items):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise _bad(f"'{param}' must be an object.", param)
        kind = item.get("type", "message")
        if kind == "message":
            conversation.message(item, param)
        elif kind == "function_call":
            conversation.function_call(item, param)
        elif kind == "function_call_output":
            conversation.function_output(item, param)
        # anything else (reasoning, item_reference, hosted tool calls) is an upstream's own
        # record: a native channel gets it in the client's body; translated_refusal covers the rest
    if not any(m["role"] != "system" for m in conversation.messages):
        raise _bad("'input' must hold at least one message.", "input")
    return conversation.messages


def _function(tool: dict[str, Any], param: str) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"'{param}.name' is required.", f"{param}.name")
    function: dict[str, Any] = {"name": name}
    parameters = tool.get("parameters")
    function["parameters"] = (
        parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
    )
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise _bad("'tools' must be an array of tool objects.", "tools")
    return [_function(t, f"tools[{i}]") for i, t in enumerate(tools) if t.get("type") == "function"]


def dropped_tools(body: dict[str, Any]) -> list[str]:
    """The types of the tools a translated channel cannot run (hosted by OpenAI: web_search,
    file_search, code_interpreter, mcp, ...), in the order the client listed them."""
    tools = body.get("tools")
    dropped: list[str] = []
    for tool in tools if isinstance(tools, list) else ():
        kind = str(tool.get("type")) if isinstance(tool, dict) else "unknown"
        if kind != "function" and kind not in dropped:
            dropped.append(kind)
    return dropped


def _tool_choice(body: dict[str, Any], out: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None or "tools" not in out:
        return  # OpenAI refuses a tool_choice without tools
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
        return
    if not isinstance(choice, dict):
        raise _bad("'tool_choice' must be auto, none, required or a tool object.", "tool_choice")
    kind = choice.get("type")
    if kind == "function" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        out["tool_choice"] = choice["mode"]
    # a hosted tool forced: only a native channel can honour it (translated_refusal)


def _format(body: dict[str, Any], out: dict[str, Any]) -> None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema" and isinstance(fmt, dict):
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("'text.format.schema' must be a JSON schema object.", "text.format.schema")
        spec: dict[str, Any] = {"name": str(fmt.get("name") or "response"), "schema": schema}
        for name in ("strict", "description"):
            if fmt.get(name) is not None:
                spec[name] = fmt[name]
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        raise _bad("'text.format.type' must be text, json_object or json_schema.", "text.format.type")


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    copy_numbers(body, out)
    cap = body.get("max_output_tokens")
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise _bad("'max_output_tokens' must be an integer of at least 1.", "max_output_tokens")
        out["max_tokens"] = cap
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort in EFFORTS:
        out["reasoning_effort"] = effort
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["user"] = user


def canonical_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses request body as the equivalent OpenAI chat completions body."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required.", param="model", code="missing_model")
    if body.get("background") is True:  # on every channel: its reply would be fetched, and billed, later
        raise InvalidRequest(BACKGROUND, param="background", code="unsupported_parameter")
    # the client's own body goes upstream on a native channel: it is what gets filtered
    refuse_upstream_redirection(body, RESPONSES)
    out: dict[str, Any] = {"model": model, "messages": _messages(body)}
    copy_stream(body, out)
    tools = _tools(body)
    if tools:
        out["tools"] = tools
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    _tool_choice(body, out)
    _format(body, out)
    _sampling(body, out)
    return out


def _untranslatable_input(items: Any) -> InvalidRequest | None:
    for index, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "item_reference":
            param = f"input[{index}]"
            return InvalidRequest(
                NO_STATE.format(name="item_reference"), param=param, code="unsupported_parameter"
            )
        content = item.get("content") if item.get("type", "message") == "message" else None
        for position, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and not _translatable(part):
                param = f"input[{index}].content[{position}]"
                return InvalidRequest(
                    f"'{param}' ({part.get('type')!r} by file_id or file_url, or a type the chat format"
                    " lacks) can only be served by a channel speaking the Responses API itself; send"
                    " images as image_url and files inline as file_data.",
                    param=param,
                    code="unsupported_content",
                )
    return None


def translated_refusal(body: dict[str, Any]) -> InvalidRequest | None:
    """What stops a request from being served through the canonical format: state model-go would
    have to keep, content stored upstream, or a hosted tool the client forces."""
    for name in STATEFUL_FIELDS:
        if body.get(name) is not None:
            return InvalidRequest(NO_STATE.format(name=name), param=name, code="unsupported_parameter")
    refusal = _untranslatable_input(body.get("input"))
    if refusal is not None:
        return refusal
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in (None, "function", "allowed_tools"):
        return InvalidRequest(
            f"'tool_choice' forces the hosted tool {choice.get('type')!r}, which this model's channel"
            " cannot run; model-go runs only function tools on it.",
            param="tool_choice",
            code="unsupported_tool",
        )
    return None


def dropped_header(body: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    dropped = dropped_tools(body)
    return [(b"x-modelgo-dropped-tools", ",".join(dropped).encode())] if dropped else []


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as a Response object repeats them."""
    text = body.get("text")
    reasoning = body.get("reasoning")
    return {
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"],
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "reasoning": {
            "effort": reasoning.get("effort") if isinstance(reasoning, dict) else None,
            "summary": reasoning.get("summary") if isinstance(reasoning, dict) else None,
        },
        "user": body.get("user"),
        "store": False,
        "background": False,
        "previous_response_id": None,
        "truncation": "disabled",
    }
