"""Canonical (OpenAI chat) replies in Gemini's format: a whole GenerateContentResponse, a stream of
them (SSE `data:` frames with `?alt=sse`, else one JSON array written piece by piece), and errors in
Google's shape (`{"error": {"code", "message", "status"}}`). Pure: no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.anthropic.reply import tool_input
from model_go.dialects.canonical import text_of
from model_go.errors import GatewayError
from model_go.wire.canonical import Usage, as_dict, int_or

FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
# google.rpc status names by HTTP status (ai.google.dev/gemini-api/docs/troubleshooting); the HTTP
# status itself stays model-go's, so a 402 (balance) is still a 402
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_object(exc: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "code": exc.status,
            "message": exc.message,
            "status": RPC_STATUS.get(exc.status, "INTERNAL"),
        }
    }


def error_json(exc: GatewayError) -> bytes:
    return orjson.dumps(error_object(exc))


def usage_metadata(usage: Usage, thoughts: int = 0) -> dict[str, int]:
    """Gemini counts cached tokens inside the prompt (as canonical usage does) and thoughts apart
    from the candidates' tokens."""
    metadata = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(usage.completion_tokens - thoughts, 0),
        "totalTokenCount": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens:
        metadata["cachedContentTokenCount"] = usage.cached_tokens
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    return metadata


def function_call(call: dict[str, Any], arguments: Any) -> dict[str, Any]:
    function = as_dict(call.get("function"))
    part: dict[str, Any] = {"name": str(function.get("name") or ""), "args": tool_input(arguments)}
    if isinstance(call.get("id"), str) and call["id"]:
        part["id"] = call["id"]
    return {"functionCall": part}


def text_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's (or a delta's) reasoning as a thought part and its text as a text part."""
    parts: list[dict[str, Any]] = []
    reasoning = text_of(message.get("reasoning_content") or message.get("reasoning"))
    if reasoning:
        parts.append({"text": reasoning, "thought": True})
    text = text_of(message.get("content")) or text_of(message.get("refusal"))
    if text:
        parts.append({"text": text})
    return parts


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = text_parts(message)
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            parts.append(function_call(call, as_dict(call.get("function")).get("arguments")))
    return parts


def candidate(index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish is not None:
        out["finishReason"] = finish
    return out


def response_json(
    candidates: list[dict[str, Any]], response_id: str, model: str, usage: dict[str, Any] | None
) -> bytes:
    out: dict[str, Any] = {"candidates": candidates}
    if usage is not None:
        out["usageMetadata"] = usage
    out["modelVersion"] = model
    out["responseId"] = response_id
    return orjson.dumps(out)


def reasoning_tokens(usage: Any) -> int:
    """The reasoning tokens a canonical usage object counts among its completion tokens."""
    details = as_dict(as_dict(usage).get("completion_tokens_details"))
    return int_or(details.get("reasoning_tokens"), 0)


def generate_content_json(completion: bytes, response_id: str, model: str, usage: Usage) -> bytes:
    """A canonical chat.completion as a GenerateContentResponse, one candidate per choice."""
    parsed = as_dict(orjson.loads(completion))
    candidates = []
    for position, choice in enumerate(parsed.get("choices") or ()):
        choice = as_dict(choice)
        finish = FINISH_REASONS.get(str(choice.get("finish_reason")), "STOP")
        index = int_or(choice.get("index"), position)
        candidates.append(candidate(index, _parts(as_dict(choice.get("message"))), finish))
    thoughts = reasoning_tokens(parsed.get("usage"))
    return response_json(candidates, response_id, model, usage_metadata(usage, thoughts))


JSON_STREAM_HEADERS = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-cache")]


class Framing:
    """streamGenerateContent's two wire forms: SSE `data:` frames (`?alt=sse`, what the SDKs ask
    for), else a JSON array whose elements arrive as they are made; and the keep-alive bytes and
    headers they need."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self.count = 0
        # Keep-alive bytes while the upstream is silent: a blank line, which both framings allow,
        # where the relay's SSE comment would break google-genai (Python takes the comment for a
        # JSON chunk; JavaScript's parser stalls behind it) and a JSON array alike.
        self.keepalive = b"\r\n"
        if not sse:  # the relay's headers would say text/event-stream
            self.headers = JSON_STREAM_HEADERS

    def frame(self, payload: bytes) -> bytes:
        self.count += 1
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        return (b"[" if self.count == 1 else b",\r\n") + payload

    def close(self) -> bytes:
        if self.sse:
            return b""
        return b"[]" if self.count == 0 else b"]"


class GenerateContentStream(Framing):
    """Canonical `chat.completion.chunk` payloads in, GenerateContentResponse events out. Text goes
    out as it comes; a function call once its streamed arguments are whole (Gemini sends each call
    in one piece), at the latest with the last event, which carries the finish reason and usage."""

    def __init__(self, response_id: str, model: str, sse: bool) -> None:
        self.id = response_id
        self.model = model
        super().__init__(sse)
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> call index -> call so far
        self.finish: dict[int, str] = {}
        self.thoughts = 0  # reasoning tokens among the completion tokens, when the upstream says

    def feed(self, payloads: list[bytes]) -> bytes:
        out: list[bytes] = []
        for payload in payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if chunk.get("usage"):  # the upstream's usage chunk: what the last event reports
                self.thoughts = reasoning_tokens(chunk["usage"])
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    self._choice(choice, out)
        return b"".join(out)

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        index = int_or(choice.get("index"), 0)
        delta = as_dict(choice.get("delta"))
        parts = text_parts(delta)
        calls = self.calls.setdefault(index, {})
        for fragment in delta.get("tool_calls") or ():
            if not isinstance(fragment, dict):
                continue
            position = int_or(fragment.get("index"), len(calls))
            call = calls.setdefault(position, {"id": None, "function": {"name": "", "arguments": ""}})
            call["id"] = call["id"] or fragment.get("id")
            function = as_dict(fragment.get("function"))
            call["function"]["name"] += str(function.get("name") or "")
            call["function"]["arguments"] += str(function.get("arguments") or "")
        if parts:
            out.append(self.frame(response_json([candidate(index, parts, None)], self.id, self.model, None)))
        if choice.get("finish_reason"):
            self.finish[index] = FINISH_REASONS.get(str(choice["finish_reason"]), "STOP")

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        """The last event: the buffered function calls, the finish reason and the usage (with the
        request's cost); or the error, in the same framing."""
        if error is not None:
            return self.frame(error_json(error)) + self.close()
        indexes = sorted(set(self.calls) | set(self.finish)) or [0]
        candidates = []
        for index in indexes:
            parts = [
                function_call(c, c["function"]["arguments"])
                for _, c in sorted(self.calls.get(index, {}).items())
            ]
            candidates.append(candidate(index, parts, self.finish.get(index, "STOP")))
        metadata: dict[str, Any] = {**usage_metadata(usage, self.thoughts), "cost": cost_usd}
        last = response_json(candidates, self.id, self.model, metadata)
        return self.frame(last) + self.close()
