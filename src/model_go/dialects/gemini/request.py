"""Inbound Gemini generateContent requests: validated and turned into the canonical (OpenAI chat)
body that the pipeline and every provider understand. Pure: no I/O, no settings.

Gemini's function calls may carry no id; the canonical tool call ids are made up here
(`call_<turn>_<part>`) and a functionResponse without an id answers the oldest open call of its name.
"""

from __future__ import annotations

from typing import Any

import orjson

from model_go.errors import InvalidRequest
from model_go.wire.redirects import GEMINI, refuse_upstream_redirection

# tool kinds only Google can run (search, code execution, URL fetching, ...): refused, not dropped
FUNCTION_TOOLS = "functionDeclarations"
TOOL_MODES = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "required", "NONE": "none"}
# generationConfig fields with a canonical twin
SAMPLING = (
    ("temperature", "temperature"),
    ("topP", "top_p"),
    ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"),
)
# schema keywords of Gemini's OpenAPI subset that JSON Schema (and OpenAI) does not know
SCHEMA_ONLY_GEMINI = frozenset({"propertyOrdering", "nullable"})
# thinkingLevel / thinkingBudget as a canonical reasoning_effort
THINKING_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"'{param}' must be an object.", param)
    return value


def _optional_dict(value: Any, param: str) -> dict[str, Any]:
    return {} if value is None else _dict(value, param)


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"'{param}' must be an array.", param)
    return value


def json_schema(schema: Any, depth: int = 0) -> Any:
    """Gemini's OpenAPI-style schema (types in capitals, `nullable`) as plain JSON Schema."""
    if depth > 64:
        raise _bad("A schema is nested too deeply.", "tools")
    if isinstance(schema, list):
        return [json_schema(item, depth + 1) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SCHEMA_ONLY_GEMINI:
            continue
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(sub, depth + 1) for name, sub in value.items()}
        else:
            out[key] = json_schema(value, depth + 1)
    return out


# -- parts ---------------------------------------------------------------------------------------


def _media(part: dict[str, Any], param: str) -> dict[str, Any]:
    """inlineData (bytes) or fileData (a URI the upstream fetches; model-go never does)."""
    if "inlineData" in part:
        inline = _dict(part["inlineData"], f"{param}.inlineData")
        mime, data = inline.get("mimeType"), inline.get("data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise _bad(f"'{param}.inlineData' needs a mimeType and base64 data.", f"{param}.inlineData")
        url = f"data:{mime};base64,{data}"
        if mime.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": url}}
        if mime in ("audio/wav", "audio/mp3", "audio/mpeg"):
            audio_format = "wav" if mime == "audio/wav" else "mp3"
            return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
        return {"type": "file", "file": {"filename": "document", "file_data": url}}
    file_data = _dict(part["fileData"], f"{param}.fileData")
    uri, mime = file_data.get("fileUri"), file_data.get("mimeType")
    if not isinstance(uri, str) or not uri:
        raise _bad(f"'{param}.fileData.fileUri' must be a string.", f"{param}.fileData")
    if mime is None or (isinstance(mime, str) and mime.startswith("image/")):
        return {"type": "image_url", "image_url": {"url": uri}}
    return {"type": "file", "file": {"filename": "document", "file_data": uri}}


class _Calls:
    """The function calls of the conversation so far, by id, for the responses that answer them;
    and whether only Gemini channels serve the request (`native`: parts only Gemini knows, such as
    executableCode, are then left to it, not refused)."""

    def __init__(self, native: bool) -> None:
        self.native = native
        self.open: list[tuple[str, str]] = []  # (id, name), oldest first

    def call(self, part: dict[str, Any], turn: int, index: int, param: str) -> dict[str, Any]:
        fn = _dict(part["functionCall"], f"{param}.functionCall")
        name, args = fn.get("name"), fn.get("args", {})
        if not isinstance(name, str) or not name:
            raise _bad(f"'{param}.functionCall.name' is required.", f"{param}.functionCall.name")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise _bad(f"'{param}.functionCall.args' must be an object.", f"{param}.functionCall.args")
        given = fn.get("id")
        call_id = given if isinstance(given, str) and given else f"call_{turn}_{index}"
        self.open.append((call_id, name))
        arguments = orjson.dumps(args).decode()
        return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}

    def response(self, part: dict[str, Any], param: str) -> dict[str, Any]:
        fn = _dict(part["functionResponse"], f"{param}.functionResponse")
        name, given = fn.get("name"), fn.get("id")
        if not isinstance(name, str) or not name:
            raise _bad(f"'{param}.functionResponse.name' is required.", f"{param}.functionResponse.name")
        match = next(
            (
                (i, call_id)
                for i, (call_id, called) in enumerate(self.open)
                if (call_id == given if isinstance(given, str) and given else called == name)
            ),
            None,
        )
        if match is None:
            raise _bad(
                f"'{param}.functionResponse' must answer a functionCall of an earlier model turn.",
                f"{param}.functionResponse",
            )
        del self.open[match[0]]
        content = orjson.dumps(fn.get("response", {})).decode()
        return {"role": "tool", "tool_call_id": match[1], "content": content}


def _user_turn(parts: list[Any], param: str, calls: _Calls) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        here = f"{param}[{index}]"
        part = _dict(part, here)
        if isinstance(part.get("text"), str):
            if part["text"]:
                content.append({"type": "text", "text": part["text"]})
        elif "inlineData" in part or "fileData" in part:
            content.append(_media(part, here))
        elif "functionResponse" in part:
            tools.append(calls.response(part, here))
        elif not calls.native:
            raise _bad(f"'{here}': this kind of part is not supported here.", here)
    # function responses answer the model turn just before: they come first, as OpenAI wants
    if not content:
        return tools
    if len(content) == 1 and content[0]["type"] == "text":
        return [*tools, {"role": "user", "content": content[0]["text"]}]
    return [*tools, {"role": "user", "content": content}]


def _model_turn(parts: list[Any], param: str, turn: int, calls: _Calls) -> dict[str, Any] | None:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        here = f"{param}[{index}]"
        part = _dict(part, here)
        if part.get("thought") is True:
            continue  # thought summaries (and their signatures) mean something to Gemini alone
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif "functionCall" in part:
            tool_calls.append(calls.call(part, turn, index, here))
        elif not calls.native and "thoughtSignature" not in part:
            raise _bad(f"'{here}': model turns may hold text and function calls only.", here)
    if not texts and not tool_calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _messages(body: dict[str, Any], native: bool) -> list[dict[str, Any]]:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("'contents' must be a non-empty array.", "contents")
    out: list[dict[str, Any]] = []
    calls = _Calls(native)
    for turn, content in enumerate(contents):
        param = f"contents[{turn}]"
        content = _dict(content, param)
        role = content.get("role", "user")
        parts = _list(content.get("parts"), f"{param}.parts")
        if role in ("user", "function", "tool"):
            out.extend(_user_turn(parts, f"{param}.parts", calls))
        elif role == "model":
            message = _model_turn(parts, f"{param}.parts", turn, calls)
            if message is not None:
                out.append(message)
        else:
            raise _bad(f"'{param}.role' must be 'user' or 'model'.", f"{param}.role")
    if not out:
        raise _bad("'contents' must hold at least one non-empty part.", "contents")
    return out


def _system(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):  # the REST API takes a Content; some clients send a bare string
        return {"role": "system", "content": value} if value else None
    parts = _list(_dict(value, "systemInstruction").get("parts"), "systemInstruction.parts")
    texts = []
    for index, part in enumerate(parts):
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise _bad(f"'systemInstruction.parts[{index}]' must be a text part.", "systemInstruction")
        texts.append(text)
    joined = "\n\n".join(t for t in texts if t)
    return {"role": "system", "content": joined} if joined else None


def _tools(body: dict[str, Any], out: dict[str, Any], native: bool) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    functions = []
    for index, tool in enumerate(_list(tools, "tools")):
        param = f"tools[{index}]"
        tool = _dict(tool, param)
        others = [name for name in tool if name != FUNCTION_TOOLS]
        if others and not native:
            raise _bad(f"'{param}.{others[0]}': Gemini's own tools work on Gemini channels only.", param)
        for position, declaration in enumerate(
            _list(tool.get(FUNCTION_TOOLS, []), f"{param}.{FUNCTION_TOOLS}")
        ):
            here = f"{param}.{FUNCTION_TOOLS}[{position}]"
            declaration = _dict(declaration, here)
            name = declaration.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"'{here}.name' is required.", here)
            function: dict[str, Any] = {"name": name}
            if isinstance(declaration.get("description"), str):
                function["description"] = declaration["description"]
            schema = declaration.get("parametersJsonSchema") or json_schema(declaration.get("parameters"))
            function["parameters"] = (
                schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            )
            functions.append({"type": "function", "function": function})
    if functions:
        out["tools"] = functions
        _tool_choice(body, out)


def _tool_choice(body: dict[str, Any], out: dict[str, Any]) -> None:
    config = body.get("toolConfig")
    if config is None:
        return
    calling = _optional_dict(_dict(config, "toolConfig").get("functionCallingConfig"), "toolConfig")
    mode = calling.get("mode", "AUTO")
    if not isinstance(mode, str) or mode not in TOOL_MODES:
        raise _bad(
            "'toolConfig.functionCallingConfig.mode' must be AUTO, ANY, NONE or VALIDATED.", "toolConfig"
        )
    allowed = calling.get("allowedFunctionNames")
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
        out["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
    else:
        out["tool_choice"] = TOOL_MODES[mode]


def _number(config: dict[str, Any], name: str) -> float | int | None:
    value = config.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'generationConfig.{name}' must be a number.", f"generationConfig.{name}")
    return value


def _positive(config: dict[str, Any], name: str) -> int | None:
    value = config.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"'generationConfig.{name}' must be an integer of at least 1.", f"generationConfig.{name}")
    return value


def _reasoning_effort(thinking: dict[str, Any]) -> str | None:
    """An explicit thinking level or budget as an effort; a dynamic (-1) or absent one leaves the
    upstream's default, and a zero budget (no thinking) asks for nothing either."""
    level = thinking.get("thinkingLevel")
    if isinstance(level, str) and level.upper() in THINKING_LEVELS:
        return THINKING_LEVELS[level.upper()]
    budget = thinking.get("thinkingBudget")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        return None
    return "low" if budget <= 1024 else "medium" if budget <= 8192 else "high"


def _generation(body: dict[str, Any], out: dict[str, Any]) -> None:
    config = _optional_dict(body.get("generationConfig"), "generationConfig")
    cap = _positive(config, "maxOutputTokens")
    if cap is not None:
        out["max_tokens"] = cap
    for theirs, ours in SAMPLING:
        value = _number(config, theirs)
        if value is not None:
            out[ours] = value
    if isinstance(config.get("seed"), int) and not isinstance(config.get("seed"), bool):
        out["seed"] = config["seed"]
    candidates = _positive(config, "candidateCount")
    if candidates is not None and candidates > 1:
        out["n"] = candidates
    stops = config.get("stopSequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'generationConfig.stopSequences' must be an array of strings.", "generationConfig")
        if stops:
            out["stop"] = stops
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or json_schema(config.get("responseSchema"))
        if isinstance(schema, dict):
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema},
            }
        else:
            out["response_format"] = {"type": "json_object"}
    effort = _reasoning_effort(
        _optional_dict(config.get("thinkingConfig"), "generationConfig.thinkingConfig")
    )
    if effort is not None:
        out["reasoning_effort"] = effort


def canonical_request(body: dict[str, Any], model: str, stream: bool, native: bool = False) -> dict[str, Any]:
    """A generateContent request body (model and streaming from the URL) as a chat completions body.

    `native`: only Gemini channels serve the model, so the client's body goes upstream as it is and
    the canonical body only bounds the reservation: what only Gemini can do (its own tools, a
    cachedContent, parts such as executableCode) is left out of it rather than refused."""
    if "cachedContent" in body and not native:
        raise _bad("'cachedContent' names a Gemini cache: it works on Gemini channels only.", "cachedContent")
    # the client's own body goes upstream on a Gemini channel: no field may point it elsewhere
    refuse_upstream_redirection(body, GEMINI)
    out: dict[str, Any] = {"model": model}
    system = _system(body.get("systemInstruction", body.get("system_instruction")))
    messages = _messages(body, native)
    out["messages"] = [system, *messages] if system else messages
    if stream:
        out["stream"] = True
    _tools(body, out, native)
    _generation(body, out)
    return out


def count_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A countTokens body (`contents`, or a whole `generateContentRequest`) in canonical form."""
    inner = body.get("generateContentRequest")
    return canonical_request(inner if isinstance(inner, dict) else body, model, stream=False, native=True)
