"""Anthropic Messages API upstream: OpenAI chat requests in, Messages API out, and back again,
whole or streamed (message_start / content_block_* / message_delta / message_stop events)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from model_go.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from model_go.providers import canonical as c
from model_go.providers import errors
from model_go.providers.base import Channel, UpstreamRequest
from model_go.wire.canonical import Call, Usage, as_dict, as_list, str_or

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}


# -- request: OpenAI chat -> Messages API --------------------------------------------------------


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = c.image_url(part, param)
    if url.startswith("data:"):
        media_type, data = c.parse_data_url(url, f"{param}.image_url.url")
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    elif c.is_web_url(url):
        source = {"type": "url", "url": url}  # Anthropic fetches it; we never do
    else:
        raise InvalidRequest(f"'{param}.image_url.url' must be an http(s) or data URL.", param=param)
    return {"type": "image", "source": source}


def _file_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = as_dict(part.get("file"))
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest(f"'{param}.file' must carry file_data as a base64 data URL.", param=param)
    media_type, data = c.parse_data_url(data_url, f"{param}.file.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _content_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks = []
    for index, part in enumerate(c.content_parts(content, param)):
        here = f"{param}[{index}]"
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = c.part_text(part, here)
            if not text:
                continue  # Anthropic refuses empty text blocks
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url":
            block = _image_block(part, here)
        elif kind == "file":
            block = _file_block(part, here)
        else:
            raise InvalidRequest(
                f"'{here}': content of type {kind!r} is not supported by this model.", param=here
            )
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        content = [
            {**p, "type": "text", "text": p.get("refusal")} if p.get("type") == "refusal" else p
            for p in content
            if isinstance(p, dict)
        ]
    blocks = _content_blocks(content, f"{param}.content")
    for index, call in enumerate(as_list(message.get("tool_calls"))):
        here = f"{param}.tool_calls[{index}]"
        fn = as_dict(call.get("function") if isinstance(call, dict) else None)
        call_id, name = (call.get("id"), fn.get("name")) if isinstance(call, dict) else (None, None)
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise InvalidRequest(f"'{here}' needs an id and a function name.", param=here)
        arguments = c.tool_arguments(fn.get("arguments"), f"{here}.function.arguments")
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{param}.tool_call_id' is required.", param=f"{param}.tool_call_id")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _content_blocks(content, f"{param}.content")
    return block


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, Anthropic messages). Consecutive turns of one role are merged, since the
    Messages API wants user and assistant turns to alternate."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), f"{param}.content"))
            continue
        if role == "user":
            blocks, turn_role = _content_blocks(message.get("content"), f"{param}.content"), "user"
        elif role == "assistant":
            blocks, turn_role = _assistant_blocks(message, param), "assistant"
        elif role == "tool":
            blocks, turn_role = [_tool_result_block(message, param)], "user"
        else:
            raise InvalidRequest(f"'{param}.role' {role!r} is not supported by this model.", param=param)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        raise InvalidRequest("'messages' must hold at least one user message.", param="messages")
    return system, turns


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    tools = []
    for fn in c.function_tools(body):
        tool: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            tool["description"] = fn["description"]
        params = fn.get("parameters")
        tool["input_schema"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
        tools.append(tool)
    choice = c.tool_choice(body)
    mapped: dict[str, Any] | None = None
    if choice is not None:
        mode, name = choice
        mapped = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}.get(
            mode, {"type": "tool", "name": name}
        )
    if body.get("parallel_tool_calls") is False and tools:
        mapped = mapped or {"type": "auto"}
        if mapped["type"] != "none":
            mapped["disable_parallel_tool_use"] = True
    return tools, mapped


def _output_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    fmt = as_dict(body.get("response_format"))
    schema = as_dict(fmt.get("json_schema")).get("schema")
    if fmt.get("type") == "json_schema" and isinstance(schema, dict):
        config["format"] = {"type": "json_schema", "schema": schema}
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in EFFORTS:
        config["effort"] = EFFORTS[effort]
    return config


def _max_tokens(channel: Channel, call: Call) -> int:
    if call.output_cap is not None:
        return call.output_cap
    value = c.max_output_tokens(call.body)
    if value is not None:
        return value
    configured = channel.config.get("default_max_tokens")
    return configured if isinstance(configured, int) and configured > 0 else DEFAULT_MAX_TOKENS


def build_body(channel: Channel, call: Call) -> dict[str, Any]:
    body = call.body
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("This model returns one choice per request; 'n' must be 1.", param="n")
    system, messages = convert_messages(body["messages"])
    out: dict[str, Any] = {"model": call.upstream_model, "max_tokens": _max_tokens(channel, call)}
    if system:
        out["system"] = system
    out["messages"] = messages
    stops = c.stop_sequences(body)
    if stops:
        out["stop_sequences"] = stops
    temperature = c.number(body, "temperature")
    if temperature is not None:
        out["temperature"] = min(temperature, 1.0)  # OpenAI's range is 0-2, Anthropic's 0-1
    top_p = c.number(body, "top_p")
    if top_p is not None:
        out["top_p"] = top_p
    for passthrough in ("top_k", "thinking"):  # Anthropic's own knobs, sent as extra body fields
        if passthrough in body:
            out[passthrough] = body[passthrough]
    tools, choice = _tools(body)
    if tools:
        out["tools"] = tools
    if choice is not None and tools:
        out["tool_choice"] = choice
    output_config = _output_config(body)
    if output_config:
        out["output_config"] = output_config
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if call.stream:
        out["stream"] = True
    return out


# -- responses: Messages API -> OpenAI chat ------------------------------------------------------


def usage_from(obj: Any) -> Usage | None:
    """Canonical usage: cache reads and writes are prompt tokens too; reads are the cached ones."""
    if not isinstance(obj, dict) or not isinstance(obj.get("input_tokens"), int):
        return None
    read = obj.get("cache_read_input_tokens") or 0
    written = obj.get("cache_creation_input_tokens") or 0
    output = obj.get("output_tokens") or 0
    return Usage(
        prompt_tokens=obj["input_tokens"] + read + written,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
    )


def _message_json(message: dict[str, Any]) -> tuple[dict[str, Any], str]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in as_list(message.get("content")):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thoughts.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(c.tool_call_json(str(block.get("id")), str(block.get("name")), arguments))
    finish = FINISH_REASONS.get(str(message.get("stop_reason")), c.FINISH_STOP)
    return c.message_json("".join(texts), "".join(thoughts), calls), finish


def chat_response_json(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    parsed = c.load_object(body)
    if parsed.get("type") != "message" or not isinstance(parsed.get("content"), list):
        raise c.malformed()
    message, finish = _message_json(parsed)
    usage = usage_from(parsed.get("usage"))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    model = str_or(parsed.get("model"), call.upstream_model)
    out = c.completion_json(
        str(parsed.get("id") or "msg"), model, [choice], c.usage_json(usage) if usage else None
    )
    return out, usage


def stream_error(error: Any) -> GatewayError:
    kind = as_dict(error).get("type")
    if kind == "overloaded_error":
        return UpstreamUnavailable("The upstream provider is overloaded. Please retry shortly.")
    if kind == "rate_limit_error":
        return RateLimited(
            "The upstream provider is rate limiting requests. Please retry shortly.",
            code="upstream_rate_limited",
        )
    return UpstreamError("The upstream provider failed while streaming the response.")


class AnthropicStream:
    """Messages API events in, `chat.completion.chunk` payloads out. `usage` is set from
    message_delta's final counts only: a stream cut before it is billed on the estimate, never on
    message_start's one output token."""

    def __init__(self, call: Call) -> None:
        self.client_wants_usage = call.client_wants_usage
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None
        self._writer = c.ChunkWriter("msg", call.upstream_model)
        self._raw_usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool call index

    def _emit(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        self.completion_chars += c.delta_chars(delta)
        return self._writer.delta(delta, finish=finish)

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            return self._start(as_dict(event.get("message")))
        if kind == "content_block_start":
            return self._block_start(event.get("index"), as_dict(event.get("content_block")))
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), as_dict(event.get("delta")))
        if kind == "message_delta":
            return self._message_delta(as_dict(event.get("delta")), as_dict(event.get("usage")))
        if kind == "message_stop":
            self.finished = True
            if self.client_wants_usage and self.usage is not None:
                return [self._writer.usage(c.usage_json(self.usage))]
            return []
        if kind == "error":
            self.error = stream_error(event.get("error"))
            self.finished = True
        return []  # ping, content_block_stop and events added later carry nothing for the client

    def _start(self, message: dict[str, Any]) -> list[bytes]:
        if isinstance(message.get("id"), str):
            self._writer.id = message["id"]
        if isinstance(message.get("model"), str):
            self._writer.model = message["model"]
        self._raw_usage.update(as_dict(message.get("usage")))
        return [self._emit({"role": "assistant", "content": ""})]

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[bytes]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._emit({"content": str(block["text"])})]
        if kind != "tool_use" or not isinstance(index, int):
            return []
        position = len(self._tool_index)
        self._tool_index[index] = position
        call = c.tool_call_json(str(block.get("id")), str(block.get("name")), "", index=position)
        return [self._emit({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[bytes]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._emit({"content": str(delta["text"])})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._emit({"reasoning_content": str(delta["thinking"])})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            fragment = {
                "index": self._tool_index[index],
                "function": {"arguments": str(delta["partial_json"])},
            }
            return [self._emit({"tool_calls": [fragment]})]
        return []  # signature_delta, citations_delta: nothing an OpenAI client can use

    def _message_delta(self, delta: dict[str, Any], usage: dict[str, Any]) -> list[bytes]:
        # the counts in message_delta are cumulative: they replace what message_start said
        self._raw_usage.update({k: v for k, v in usage.items() if v is not None})
        self.usage = usage_from(self._raw_usage)
        finish = FINISH_REASONS.get(str(delta.get("stop_reason")), c.FINISH_STOP)
        return [self._writer.delta({}, finish=finish)]


# -- errors --------------------------------------------------------------------------------------


def _error_type(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    kind = as_dict(as_dict(parsed).get("error")).get("type")
    return kind if isinstance(kind, str) else None


def error_for(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """Anthropic's error types, mapped to ours; the upstream's message is never relayed. An account
    out of credit is a 400 invalid_request_error that speaks of the credit balance."""
    quota = errors.quota_error(status, body)
    if quota is not None or (status == 400 and b"credit balance" in body):
        return quota or errors.out_of_quota()
    kind = _error_type(body)
    if kind == "overloaded_error" or status == 529:
        after = errors.retry_after(headers)
        return UpstreamUnavailable(
            "The upstream provider is overloaded. Please retry shortly.",
            headers={"Retry-After": after} if after else None,
        )
    if kind == "rate_limit_error" or status == 429:
        return RateLimited(
            "The upstream provider is rate limiting requests. Please retry shortly.",
            code="upstream_rate_limited",
            headers={"Retry-After": errors.retry_after(headers) or "1"},
        )
    if kind in ("authentication_error", "permission_error") or status in (401, 403):
        return UpstreamError(
            "The upstream provider refused this channel's credentials.", code="upstream_auth_failed"
        )
    if kind == "billing_error":
        return errors.out_of_quota()
    if kind == "not_found_error" or status == 404:
        return UpstreamError(
            "The upstream provider does not know this channel's model.", code="upstream_model_not_found"
        )
    if kind in ("invalid_request_error", "request_too_large") or 400 <= status < 500:
        return InvalidRequest(
            f"The upstream provider rejected the request as invalid ({kind or 'invalid_request_error'}).",
            code="upstream_bad_request",
        )
    return errors.classify(status, b"", headers)


class AnthropicProvider:
    name = "anthropic"
    local = False

    def _headers(self, channel: Channel) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": str(channel.config.get("anthropic_version") or API_VERSION),
        }
        beta = channel.config.get("anthropic_beta")
        if isinstance(beta, list):
            beta = ",".join(str(b) for b in beta)
        if isinstance(beta, str) and beta:
            headers["anthropic-beta"] = beta
        if channel.api_key:
            headers["x-api-key"] = channel.api_key
        return headers

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        return UpstreamRequest(
            url=channel.base_url.rstrip("/") + "/messages",
            headers=self._headers(channel),
            body=orjson.dumps(build_body(channel, call)),
        )

    def chat_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        return chat_response_json(call, body)

    def stream_translator(self, call: Call) -> AnthropicStream:
        return AnthropicStream(call)

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        raise InvalidRequest(
            f"The model '{call.model}' does not support embeddings.", param="model", code="unsupported_model"
        )

    def embeddings_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        raise InvalidRequest("This model does not support embeddings.", param="model")

    def error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_for(status, body, headers)
